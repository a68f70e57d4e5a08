#!/usr/bin/env python3
"""Structural check of the PowerShell kit (scripts/*.ps1), for machines without PowerShell.

No PowerShell can be installed on the project's Debian machines from the registries they
reach (README, "What is verified where"), so this is NOT a PowerShell parser and proves much
less than the Windows workflow's job (PowerShell's own parser plus PSScriptAnalyzer). What it
does check, per script:

  - ASCII only (Windows PowerShell 5.1 reads a file without a BOM as ANSI);
  - (), {} and [] balance outside comments, strings and here-strings, with `$( )`
    subexpressions inside double-quoted strings lexed as code; every string, here-string and
    block comment is closed;
  - no PowerShell 7-only operators (`&&`, `||`, `??`, `?.`) in code;
  - a comment-based help block with .SYNOPSIS, .DESCRIPTION and .EXAMPLE, and a .PARAMETER
    for every parameter of the script's param() block;
  - `Set-StrictMode -Version Latest` and `$ErrorActionPreference = 'Stop'`;
  - an elevation check (`#Requires -RunAsAdministrator` or Assert-VmbmmioAdministrator);
  - every call that changes the machine (driver store, device nodes, boot configuration,
    Driver Verifier, certificate stores, services, the HCS, processes) sits inside an
    `if ($PSCmdlet.ShouldProcess(...)) { }` block of a script declared
    `[CmdletBinding(SupportsShouldProcess)]`.

The state-changing calls are recognised by a fixed list of patterns (STATE_CHANGES below),
so a new kind of change needs a new pattern. `--self-test` runs the checks on small broken
scripts and fails unless each problem is reported.

Usage: check-ps1.py [--self-test] [FILE...]   (default: every scripts/*.ps1)
"""

import pathlib
import re
import sys

# Calls that change the machine, as they appear in the kit's scripts.
STATE_CHANGES = [
    ("pnputil /add-driver", re.compile(r"'/add-driver'")),
    ("pnputil /delete-driver", re.compile(r"'/delete-driver'")),
    ("pnputil /remove-device", re.compile(r"'/remove-device'")),
    ("bcdedit /set", re.compile(r"bcdedit(\.exe)?\b.*'/set'", re.I)),
    ("verifier /standard or /flags", re.compile(r"verifier(\.exe)?\b.*'/(standard|flags)'", re.I)),
    ("verifier /reset", re.compile(r"verifier(\.exe)?\b.*'/reset'", re.I)),
    ("Import-Certificate", re.compile(r"\bImport-Certificate\s+-", re.I)),
    ("certutil -addstore/-delstore", re.compile(r"'-(addstore|delstore)'", re.I)),
    ("Remove-Item", re.compile(r"\bRemove-Item\b", re.I)),
    ("Set-ItemProperty/New-ItemProperty", re.compile(r"\b(Set|New)-ItemProperty\b", re.I)),
    ("sc.exe delete/config", re.compile(r"sc\.exe\b.*'(delete|config)'", re.I)),
    ("Stop-Process", re.compile(r"\bStop-Process\b", re.I)),
    ("HCS create/start/terminate/grant/revoke",
     re.compile(r"\[Vmbmmio\.Hcs\]::(Create|Start|Terminate|GrantVmAccess|RevokeVmAccess)\(")),
    ("root device node creation", re.compile(r"\[Vmbmmio\.RootDevice\]::Create\(")),
]

PS7_ONLY = ["&&", "||", "??", "?."]
OPEN = {"(": ")", "{": "}", "[": "]"}


class Lexed:
    """Code characters of a script (comments and string contents blanked) and its brace blocks."""

    def __init__(self):
        self.problems = []
        self.code = []  # (offset, char) of code characters outside strings and comments
        self.blocks = []  # (open offset, close offset, header text) of every {...}
        self.hidden = []  # (start, end) of comments and here-strings


def line_of(text, offset):
    return text.count("\n", 0, offset) + 1


def lex(text):
    out = Lexed()
    stack = []  # (char, offset)
    i = 0
    n = len(text)

    def here_string(i, quote):
        # @' or @" must end its line; the string ends at a line starting with '@ or "@.
        end_of_line = text.find("\n", i)
        if end_of_line == -1 or text[i + 2:end_of_line].strip():
            out.problems.append(f"line {line_of(text, i)}: here-string opener must end its line")
            return n
        m = re.compile(r"^" + re.escape(quote) + "@", re.M).search(text, end_of_line + 1)
        if not m:
            out.problems.append(f"line {line_of(text, i)}: here-string never closed")
            return n
        out.hidden.append((i, m.end()))
        return m.end()

    def double_quoted(i):
        # i is just after the opening quote; returns the offset after the closing quote.
        while i < n:
            c = text[i]
            if c == "`":
                i += 2
                continue
            if c == '"':
                if i + 1 < n and text[i + 1] == '"':
                    i += 2
                    continue
                return i + 1
            if c == "$" and i + 1 < n and text[i + 1] == "(":
                i = code(i + 2, ")")
                continue
            i += 1
        out.problems.append("a double-quoted string is never closed")
        return n

    def code(i, until):
        # Lexes code from i; with `until` (a closer) stops after its matching character.
        depth_mark = len(stack)
        if until:
            stack.append(("(", i - 1))
        while i < n:
            c = text[i]
            two = text[i:i + 2]
            if two == "<#":
                end = text.find("#>", i + 2)
                if end == -1:
                    out.problems.append(f"line {line_of(text, i)}: block comment never closed")
                    return n
                out.hidden.append((i, end + 2))
                i = end + 2
                continue
            if c == "#" and (i == 0 or text[i - 1] in " \t\r\n;({"):
                end = text.find("\n", i)
                end = n if end == -1 else end
                out.hidden.append((i, end))
                i = end
                continue
            if two in ("@'", '@"'):
                i = here_string(i, two[1])
                continue
            if c == "'":
                j = i + 1
                while True:
                    j = text.find("'", j)
                    if j == -1:
                        out.problems.append(f"line {line_of(text, i)}: single-quoted string never closed")
                        return n
                    if j + 1 < n and text[j + 1] == "'":
                        j += 2
                        continue
                    break
                i = j + 1
                continue
            if c == '"':
                i = double_quoted(i + 1)
                continue
            if c == "`":
                i += 2
                continue
            out.code.append((i, c))
            if c in OPEN:
                stack.append((c, i))
            elif c in ")}]":
                if len(stack) <= depth_mark or OPEN[stack[-1][0]] != c:
                    out.problems.append(f"line {line_of(text, i)}: unbalanced '{c}'")
                else:
                    opener, at = stack.pop()
                    if opener == "{":
                        start = text.rfind("\n", 0, at) + 1
                        out.blocks.append((at, i, text[start:at]))
                    if until and len(stack) == depth_mark:
                        return i + 1
            i += 1
        return n

    code(0, None)
    for opener, at in stack:
        out.problems.append(f"line {line_of(text, at)}: '{opener}' never closed")
    return out


def check_text(name, text):
    problems = []
    for number, line in enumerate(text.split("\n"), 1):
        if any(ord(ch) > 127 for ch in line):
            problems.append(f"line {number}: non-ASCII character (PowerShell 5.1 reads BOM-less files as ANSI)")
    lexed = lex(text)
    problems += lexed.problems
    code_only = list(text)
    kept = {offset for offset, _ in lexed.code}
    for offset, ch in enumerate(code_only):
        if offset not in kept and ch != "\n":
            code_only[offset] = " "
    code_view = "".join(code_only)
    # Strings kept, comments and here-strings blanked: where the state-changing calls are found.
    call_only = list(text)
    for start, end in lexed.hidden:
        for offset in range(start, end):
            if call_only[offset] != "\n":
                call_only[offset] = " "
    call_view = "".join(call_only)
    for token in PS7_ONLY:
        for m in re.finditer(re.escape(token), code_view):
            problems.append(f"line {line_of(text, m.start())}: '{token}' is PowerShell 7 only")

    help_match = re.search(r"<#(.*?)#>", text, re.S)
    help_text = help_match.group(1) if help_match else ""
    if not help_match or text[:help_match.start()].strip():
        problems.append("no comment-based help block at the top of the script")
    for keyword in (".SYNOPSIS", ".DESCRIPTION", ".EXAMPLE"):
        if keyword not in help_text:
            problems.append(f"help lacks {keyword}")
    param_match = re.search(r"^param\s*\(", code_view, re.M | re.I)
    if param_match:
        depth = 0
        names = []
        j = param_match.end() - 1
        while j < len(code_view):
            ch = code_view[j]
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
                if depth == 0:
                    break
            elif ch == "$" and depth == 1:
                m = re.match(r"\$(\w+)\s*(=|,|\)|\r?\n|$)", code_view[j:])
                if m:
                    names.append(m.group(1))
            j += 1
        for param in names:
            if not re.search(r"\.PARAMETER\s+" + re.escape(param) + r"\b", help_text, re.I):
                problems.append(f"help lacks .PARAMETER {param}")
    if not re.search(r"^Set-StrictMode -Version Latest\s*$", text, re.M):
        problems.append("no 'Set-StrictMode -Version Latest'")
    if not re.search(r"^\$ErrorActionPreference = 'Stop'\s*$", text, re.M):
        problems.append("no \"$ErrorActionPreference = 'Stop'\"")
    defines_check = "function Assert-VmbmmioAdministrator" in text
    if not defines_check and not re.search(r"^#Requires -RunAsAdministrator|^Assert-VmbmmioAdministrator\s*$", text, re.M | re.I):
        problems.append("no elevation check (#Requires -RunAsAdministrator or Assert-VmbmmioAdministrator)")

    declares = re.search(r"\[CmdletBinding\([^)]*SupportsShouldProcess", code_view) is not None
    for what, pattern in STATE_CHANGES:
        for m in pattern.finditer(call_view):
            at = m.start()
            guarded = any(start < at < end and "ShouldProcess(" in header
                          for start, end, header in lexed.blocks)
            if not declares:
                problems.append(f"line {line_of(text, at)}: {what} in a script without [CmdletBinding(SupportsShouldProcess)]")
            if not guarded:
                problems.append(f"line {line_of(text, at)}: {what} outside an if ($PSCmdlet.ShouldProcess(...)) block")
    return [f"{name}: {p}" for p in problems]


GOOD = """<#
.SYNOPSIS
    x
.DESCRIPTION
    x
.PARAMETER Path
    x
.EXAMPLE
    x
#>
[CmdletBinding(SupportsShouldProcess)]
param([string]$Path)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Assert-VmbmmioAdministrator
$s = "a $($Path -join ", ") b"
$h = @'
( unbalanced inside a here-string is fine {
'@
if ($PSCmdlet.ShouldProcess($Path, 'x')) {
    $null = Invoke-VmbmmioNative -FilePath pnputil.exe -ArgumentList @('/remove-device', $Path)
}
"""

SELF_TESTS = [
    ("a clean script", GOOD, None),
    ("non-ASCII", GOOD.replace("b\"", "\u2014\""), "non-ASCII"),
    ("unbalanced brace", GOOD + "if ($true) {\n", "never closed"),
    ("wrong closer", GOOD + "$a = @(1, 2}\n", "unbalanced"),
    ("unclosed string", GOOD + "$a = 'x\n", "never closed"),
    ("PowerShell 7 operator", GOOD + "$a = $b ?? 1\n", "PowerShell 7 only"),
    ("missing .EXAMPLE", GOOD.replace(".EXAMPLE", ".NOTES"), "lacks .EXAMPLE"),
    ("undocumented parameter", GOOD.replace("param([string]$Path)", "param([string]$Path, [int]$Count)"), ".PARAMETER Count"),
    ("no strict mode", GOOD.replace("Set-StrictMode -Version Latest\n", ""), "Set-StrictMode"),
    ("no elevation check", GOOD.replace("Assert-VmbmmioAdministrator\n", ""), "elevation"),
    ("change outside ShouldProcess", GOOD + "Remove-Item -LiteralPath $Path\n", "outside an if ($PSCmdlet.ShouldProcess"),
    ("no SupportsShouldProcess", GOOD.replace("[CmdletBinding(SupportsShouldProcess)]", "[CmdletBinding()]"), "without [CmdletBinding(SupportsShouldProcess)]"),
]


def self_test():
    passed = failed = 0
    for name, text, expected in SELF_TESTS:
        problems = check_text(name, text)
        ok = (not problems) if expected is None else any(expected in p for p in problems)
        if ok:
            passed += 1
        else:
            failed += 1
            print(f"self-test '{name}': expected {expected or 'no problem'}, got {problems}")
    print(f"check-ps1 self-test: {passed} passed, {failed} failed")
    return failed == 0


def main(argv):
    if argv[:1] == ["--self-test"]:
        if not self_test():
            return 1
        argv = argv[1:]
    files = [pathlib.Path(a) for a in argv] or sorted(pathlib.Path(__file__).parent.glob("*.ps1"))
    if not files:
        print("check-ps1: no .ps1 files found", file=sys.stderr)
        return 1
    problems = []
    for path in files:
        problems += check_text(str(path), path.read_text(encoding="utf-8", errors="replace"))
    for problem in problems:
        print(problem)
    print(f"check-ps1: {len(files)} script(s), {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
