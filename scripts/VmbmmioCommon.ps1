<#
.SYNOPSIS
    Shared helpers of the vmbmmio PowerShell kit. Dot-sourced by the other scripts; changes nothing.

.DESCRIPTION
    Defines functions only: the elevation check, finding the driver package and the device
    host, reading the INF (class, class GUID, hardware ids), running native tools without
    PowerShell 5.1 turning their stderr into terminating errors, finding the device node and
    the driver package in the driver store, the Hyper-V prerequisite check, and a minimal
    P/Invoke wrapper of the Host Compute Service (computecore.dll), which has no cmdlets.

    Nothing here changes the machine by itself; the scripts that call these helpers ask
    ShouldProcess before every change.

.EXAMPLE
    . (Join-Path $PSScriptRoot 'VmbmmioCommon.ps1')
    $package = Resolve-VmbmmioPackage -PackagePath $PackagePath
#>
[CmdletBinding()]
param()

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Get-VmbmmioDefault {
    <#
    .SYNOPSIS
        The fixed names and GUIDs the kit shares with the driver and the device host.
    .DESCRIPTION
        InstanceId and EmulatorClassId are the device host's defaults for `instance_id` and
        `emulator_class_id` (docs/devhost.md, "Configuration"; the FlexibleIov entry is built
        as crates/vmbmmio-devhost/src/vm_config.rs does). ControlDevice is the driver's
        control device (crates/vmbmmio-devhost/src/windows/ioctl.rs, CONTROL_DEVICE_PATH).
        TestVmId is the kit's own default compute-system id for the test VM.
    .EXAMPLE
        (Get-VmbmmioDefault).ControlDevice
    #>
    [CmdletBinding()]
    [OutputType([pscustomobject])]
    param()
    [pscustomobject]@{
        ServiceName     = 'vmbmmio'
        DriverFile      = 'vmbmmio.sys'
        InfName         = 'vmbmmio.inf'
        CatalogName     = 'vmbmmio.cat'
        CertificateName = 'WDRLocalTestCert.cer'
        DevHostExe      = 'vmbmmio-devhost.exe'
        ControlDevice   = '\\.\vmbmmio'
        InstanceId      = 'a298f338-8137-4c56-953b-aa2aa5e4f4ee'
        EmulatorClassId = '9bdff1a3-9ee9-41b5-96ee-5187a86b81fe'
        TestVmId        = '6f1c9a52-3d47-4e0b-9b1e-7a5d2c8e4f10'
        StateDirectory  = (Join-Path $env:ProgramData 'vmbmmio-test')
    }
}

function Assert-VmbmmioAdministrator {
    <#
    .SYNOPSIS
        Stops with a clear message unless the session is elevated.
    .EXAMPLE
        Assert-VmbmmioAdministrator
    #>
    [CmdletBinding()]
    param()
    $identity = [System.Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object System.Security.Principal.WindowsPrincipal($identity)
    if (-not $principal.IsInRole([System.Security.Principal.WindowsBuiltInRole]::Administrator)) {
        throw ('This script changes or inspects driver, boot or Hyper-V state and must run ' +
            'elevated. Open PowerShell with "Run as administrator" and run it again.')
    }
}

function Get-VmbmmioRepositoryRoot {
    <#
    .SYNOPSIS
        The checkout this kit lives in (the parent of scripts/).
    .EXAMPLE
        Get-VmbmmioRepositoryRoot
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param()
    Split-Path -Path $PSScriptRoot -Parent
}

function Resolve-VmbmmioPackage {
    <#
    .SYNOPSIS
        Finds the driver package folder and checks that it holds the INF, the .sys and the catalog.
    .DESCRIPTION
        With -PackagePath, that folder. Without it: the current directory if it holds
        vmbmmio.inf, else target\release\vmbmmio_package, else target\debug\vmbmmio_package in
        this checkout (where `cargo make` puts it).
    .PARAMETER PackagePath
        The package folder (vmbmmio.inf, vmbmmio.sys, vmbmmio.cat, WDRLocalTestCert.cer).
    .EXAMPLE
        Resolve-VmbmmioPackage -PackagePath C:\vmbmmio\package
    #>
    [CmdletBinding()]
    [OutputType([pscustomobject])]
    param([string]$PackagePath)
    $defaults = Get-VmbmmioDefault
    $candidates = @()
    if ($PackagePath) {
        $candidates += $PackagePath
    } else {
        $root = Get-VmbmmioRepositoryRoot
        $candidates += (Get-Location).Path
        $candidates += (Join-Path $root 'target\release\vmbmmio_package')
        $candidates += (Join-Path $root 'target\debug\vmbmmio_package')
    }
    $found = $null
    foreach ($candidate in $candidates) {
        if (Test-Path -LiteralPath (Join-Path $candidate $defaults.InfName) -PathType Leaf) {
            $found = (Resolve-Path -LiteralPath $candidate).Path
            break
        }
    }
    if (-not $found) {
        throw ("No driver package found (looked for $($defaults.InfName) in: " +
            ($candidates -join '; ') + '). Build it with `cargo make` (README, "Build and ' +
            'package on Windows") and pass its folder with -PackagePath.')
    }
    $missing = @()
    foreach ($name in @($defaults.InfName, $defaults.DriverFile, $defaults.CatalogName)) {
        if (-not (Test-Path -LiteralPath (Join-Path $found $name) -PathType Leaf)) { $missing += $name }
    }
    if ($missing.Count -gt 0) {
        throw ("The package folder $found lacks " + ($missing -join ', ') +
            '. Use the whole vmbmmio_package folder that `cargo make` produced.')
    }
    $cer = Join-Path $found $defaults.CertificateName
    if (-not (Test-Path -LiteralPath $cer -PathType Leaf)) { $cer = $null }
    [pscustomobject]@{
        Path        = $found
        Inf         = (Join-Path $found $defaults.InfName)
        Sys         = (Join-Path $found $defaults.DriverFile)
        Catalog     = (Join-Path $found $defaults.CatalogName)
        Certificate = $cer
    }
}

function Read-VmbmmioInf {
    <#
    .SYNOPSIS
        Reads the class, class GUID and hardware ids from a stamped INF.
    .DESCRIPTION
        Follows [Manufacturer] to its models sections (with their target decorations) and
        takes the hardware id of every model line (the field after the install section), so
        the scripts never guess the id. Refuses an unstamped INX (it still holds $ARCH$).
    .PARAMETER Path
        Path of the INF.
    .EXAMPLE
        (Read-VmbmmioInf -Path .\vmbmmio.inf).HardwareIds
    #>
    [CmdletBinding()]
    [OutputType([pscustomobject])]
    param([Parameter(Mandatory)][string]$Path)
    $sections = @{}
    $current = $null
    foreach ($raw in (Get-Content -LiteralPath $Path)) {
        # Strip a comment (';' outside double quotes) and surrounding blanks.
        $line = ''
        $inQuote = $false
        foreach ($ch in $raw.ToCharArray()) {
            if ($ch -eq '"') { $inQuote = -not $inQuote }
            if ($ch -eq ';' -and -not $inQuote) { break }
            $line += $ch
        }
        $line = $line.Trim()
        if ($line.Length -eq 0) { continue }
        if ($line -match '^\[(.+)\]$') {
            $current = $Matches[1].Trim().ToLowerInvariant()
            if (-not $sections.ContainsKey($current)) { $sections[$current] = New-Object System.Collections.ArrayList }
            continue
        }
        if ($null -ne $current) { [void]$sections[$current].Add($line) }
    }
    $text = Get-Content -LiteralPath $Path -Raw
    if ($text -match '\$ARCH\$|\$KMDFVERSION\$') {
        throw "$Path is an unstamped template (it still holds `$ARCH`$); use the INF from the package that ``cargo make`` built."
    }
    $class = $null
    $classGuid = $null
    if ($sections.ContainsKey('version')) {
        foreach ($entry in $sections['version']) {
            if ($entry -match '^Class\s*=\s*(.+)$') { $class = $Matches[1].Trim() }
            if ($entry -match '^ClassGuid\s*=\s*(\{[0-9A-Fa-f-]+\})') { $classGuid = $Matches[1] }
        }
    }
    if (-not $class -or -not $classGuid) { throw "$Path has no Class/ClassGuid in [Version]." }
    $hardwareIds = New-Object System.Collections.ArrayList
    if (-not $sections.ContainsKey('manufacturer')) { throw "$Path has no [Manufacturer] section." }
    foreach ($entry in $sections['manufacturer']) {
        if ($entry -notmatch '=') { continue }
        $fields = @(($entry -split '=', 2)[1].Split(',') | ForEach-Object { $_.Trim() })
        $models = $fields[0]
        $names = @()
        if ($fields.Count -eq 1) { $names += $models }
        foreach ($decoration in ($fields | Select-Object -Skip 1)) { $names += "$models.$decoration" }
        foreach ($name in $names) {
            $key = $name.ToLowerInvariant()
            if (-not $sections.ContainsKey($key)) { continue }
            foreach ($model in $sections[$key]) {
                if ($model -notmatch '=') { continue }
                $parts = @(($model -split '=', 2)[1].Split(',') | ForEach-Object { $_.Trim() })
                if ($parts.Count -ge 2 -and $parts[1] -and -not $hardwareIds.Contains($parts[1])) {
                    [void]$hardwareIds.Add($parts[1])
                }
            }
        }
    }
    if ($hardwareIds.Count -eq 0) { throw "$Path names no hardware id in its models sections." }
    [pscustomobject]@{
        Path        = $Path
        Class       = $class
        ClassGuid   = $classGuid
        HardwareIds = [string[]]$hardwareIds.ToArray()
    }
}

function Get-VmbmmioHardwareId {
    <#
    .SYNOPSIS
        The hardware id(s) of the vmbmmio device, read from the package's INF or the INX.
    .DESCRIPTION
        From the package INF when a package is given or found; else (the package may be gone
        already, e.g. while uninstalling) from the model lines of this checkout's
        inf\vmbmmio.inx. Never a guessed constant.
    .PARAMETER PackagePath
        The driver package folder (optional).
    .EXAMPLE
        Get-VmbmmioHardwareId -PackagePath C:\vmbmmio\vmbmmio_package
    #>
    [CmdletBinding()]
    [OutputType([string[]])]
    param([string]$PackagePath)
    try {
        $package = Resolve-VmbmmioPackage -PackagePath $PackagePath
        return (Read-VmbmmioInf -Path $package.Inf).HardwareIds
    } catch {
        if ($PackagePath) { throw }
        Write-Verbose "No package: $($_.Exception.Message)"
    }
    $inx = Join-Path (Get-VmbmmioRepositoryRoot) 'inf\vmbmmio.inx'
    if (-not (Test-Path -LiteralPath $inx)) {
        throw 'No driver package and no inf\vmbmmio.inx found to read the hardware id from; pass -PackagePath.'
    }
    $ids = @()
    $inModels = $false
    foreach ($line in (Get-Content -LiteralPath $inx)) {
        if ($line -match '^\s*\[(.+)\]') { $inModels = ($Matches[1] -like 'Standard.*'); continue }
        if ($inModels -and $line -match '^\s*%\w+%\s*=\s*[^,]+,\s*([^\s,;]+)') { $ids += $Matches[1] }
    }
    if ($ids.Count -eq 0) { throw "$inx names no hardware id; pass -PackagePath." }
    [string[]]$ids
}

function Resolve-VmbmmioDevHost {
    <#
    .SYNOPSIS
        Finds vmbmmio-devhost.exe, or stops saying where it looked.
    .PARAMETER Path
        The executable; without it: the current directory, then target\release and target\debug.
    .EXAMPLE
        Resolve-VmbmmioDevHost -Path C:\vmbmmio\vmbmmio-devhost.exe
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param([string]$Path)
    $name = (Get-VmbmmioDefault).DevHostExe
    $candidates = @()
    if ($Path) {
        $candidates += $Path
    } else {
        $root = Get-VmbmmioRepositoryRoot
        $candidates += (Join-Path (Get-Location).Path $name)
        $candidates += (Join-Path $root "target\release\$name")
        $candidates += (Join-Path $root "target\debug\$name")
    }
    foreach ($candidate in $candidates) {
        if (Test-Path -LiteralPath $candidate -PathType Leaf) { return (Resolve-Path -LiteralPath $candidate).Path }
    }
    throw ("$name not found (looked at: " + ($candidates -join '; ') + '). Build it with ' +
        '`cargo build --release -p vmbmmio-devhost` or `cargo make`, or pass -DevHostPath.')
}

function Invoke-VmbmmioNative {
    <#
    .SYNOPSIS
        Runs a native tool, returns its exit code and its output lines (stdout and stderr).
    .DESCRIPTION
        Windows PowerShell 5.1 turns a native tool's stderr into error records, which
        $ErrorActionPreference = 'Stop' makes terminating; this runs the tool with 'Continue'
        and returns plain strings. It throws when the exit code is not in -AllowedExitCode.
    .PARAMETER FilePath
        The tool (e.g. pnputil.exe).
    .PARAMETER ArgumentList
        Its arguments.
    .PARAMETER AllowedExitCode
        Exit codes that count as success (default 0).
    .PARAMETER IgnoreExitCode
        Never throw; the caller looks at ExitCode itself.
    .EXAMPLE
        Invoke-VmbmmioNative -FilePath pnputil.exe -ArgumentList '/enum-drivers'
    #>
    [CmdletBinding()]
    [OutputType([pscustomobject])]
    param(
        [Parameter(Mandatory)][string]$FilePath,
        [string[]]$ArgumentList = @(),
        [int[]]$AllowedExitCode = @(0),
        [switch]$IgnoreExitCode
    )
    if (-not (Get-Command -Name $FilePath -ErrorAction SilentlyContinue)) {
        throw "$FilePath is not on this machine (it is part of Windows; is this a Windows host?)."
    }
    $saved = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    try {
        $lines = @(& $FilePath @ArgumentList 2>&1 | ForEach-Object { "$_" })
        $code = $LASTEXITCODE
    } finally {
        $ErrorActionPreference = $saved
    }
    if (-not $IgnoreExitCode -and $AllowedExitCode -notcontains $code) {
        throw ("$FilePath $($ArgumentList -join ' ') failed with exit code $code`n" + ($lines -join "`n"))
    }
    [pscustomobject]@{ ExitCode = $code; Output = [string[]]$lines }
}

function Get-VmbmmioDeviceNode {
    <#
    .SYNOPSIS
        Every device node (present or not) that carries one of the given hardware ids.
    .PARAMETER HardwareId
        Hardware ids read from the INF.
    .EXAMPLE
        Get-VmbmmioDeviceNode -HardwareId 'Root\vmbmmio'
    #>
    [CmdletBinding()]
    [OutputType([object[]])]
    param([Parameter(Mandatory)][string[]]$HardwareId)
    $nodes = @(Get-PnpDevice -ErrorAction SilentlyContinue | Where-Object {
            $ids = $_.HardwareID
            $match = $false
            if ($null -ne $ids) {
                foreach ($id in $HardwareId) { if ($ids -contains $id) { $match = $true } }
            }
            $match
        })
    , $nodes
}

function Get-VmbmmioDriverStoreEntry {
    <#
    .SYNOPSIS
        Third-party driver packages in the driver store whose original INF is vmbmmio.inf.
    .DESCRIPTION
        Uses Get-WindowsDriver (DISM), whose fields are not localized, rather than parsing
        pnputil's translated output. Each entry's Driver property is its published name
        (oemNN.inf), which pnputil /delete-driver takes.
    .PARAMETER InfName
        The original INF file name.
    .EXAMPLE
        Get-VmbmmioDriverStoreEntry -InfName vmbmmio.inf
    #>
    [CmdletBinding()]
    [OutputType([object[]])]
    param([Parameter(Mandatory)][string]$InfName)
    $entries = @(Get-WindowsDriver -Online | Where-Object {
            $_.OriginalFileName -and ((Split-Path -Path $_.OriginalFileName -Leaf) -eq $InfName)
        })
    , $entries
}

function Assert-VmbmmioHyperV {
    <#
    .SYNOPSIS
        Stops with a clear message unless the Hyper-V role and the Host Compute Service exist.
    .EXAMPLE
        Assert-VmbmmioHyperV
    #>
    [CmdletBinding()]
    param()
    $computecore = Join-Path $env:SystemRoot 'System32\computecore.dll'
    $service = Get-Service -Name vmcompute -ErrorAction SilentlyContinue
    if (-not (Test-Path -LiteralPath $computecore) -or -not $service) {
        throw ('The Hyper-V role (and its Host Compute Service, vmcompute, with computecore.dll) ' +
            'is not installed. On Windows Server: Install-WindowsFeature -Name Hyper-V ' +
            '-IncludeManagementTools -Restart; on a client: Enable-WindowsOptionalFeature ' +
            '-Online -FeatureName Microsoft-Hyper-V -All. In a VM the outer host must expose ' +
            'virtualization extensions first (docs/testing-on-hyperv.md).')
    }
    if ($service.Status -ne 'Running') {
        throw "The Host Compute Service (vmcompute) is $($service.Status); start it with Start-Service vmcompute."
    }
}

function Get-VmbmmioTestSigningState {
    <#
    .SYNOPSIS
        Whether test signing is active in this boot and whether it is configured for the next.
    .DESCRIPTION
        Active: the kernel's boot options (SystemStartOptions) contain TESTSIGNING.
        Configured: `bcdedit /enum {current}` shows testsigning Yes (bcdedit's English value;
        on a localized system Configured may read false, and the caller then sets the option
        again, which is harmless).
    .EXAMPLE
        Get-VmbmmioTestSigningState
    #>
    [CmdletBinding()]
    [OutputType([pscustomobject])]
    param()
    $options = ''
    $control = Get-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Control' -ErrorAction SilentlyContinue
    if ($control -and $control.PSObject.Properties['SystemStartOptions']) { $options = [string]$control.SystemStartOptions }
    $bcd = Invoke-VmbmmioNative -FilePath bcdedit.exe -ArgumentList @('/enum', '{current}')
    $configured = $false
    foreach ($line in $bcd.Output) {
        if ($line -match '^\s*testsigning\s+(\S+)') { $configured = ($Matches[1] -eq 'Yes') }
    }
    [pscustomobject]@{
        Active     = ($options -match 'TESTSIGNING')
        Configured = $configured
    }
}

function Get-VmbmmioSecureBootState {
    <#
    .SYNOPSIS
        'On', 'Off', or 'Unsupported' (legacy BIOS, or the firmware cannot say).
    .EXAMPLE
        Get-VmbmmioSecureBootState
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param()
    try {
        if (Confirm-SecureBootUEFI) { 'On' } else { 'Off' }
    } catch {
        Write-Verbose "Confirm-SecureBootUEFI: $($_.Exception.Message)"
        'Unsupported'
    }
}

function Import-VmbmmioHcs {
    <#
    .SYNOPSIS
        Loads a minimal P/Invoke wrapper of computecore.dll (the HCS has no cmdlets).
    .DESCRIPTION
        Every HCS call that takes an operation is asynchronous: the wrapper creates an
        operation, starts the call, waits for the operation's result (HcsWaitForOperationResult)
        and turns a failure into an exception carrying the HRESULT and the HCS's result
        document. Signatures: learn.microsoft.com/virtualization/api/hcs/reference/ (the
        HcsCreateComputeSystem, HcsOpenComputeSystem, HcsStartComputeSystem,
        HcsTerminateComputeSystem, HcsGetComputeSystemProperties, HcsGrantVmAccess pages).
        Written for C# 5 so that Windows PowerShell 5.1's Add-Type compiles it.
    .EXAMPLE
        Import-VmbmmioHcs; [Vmbmmio.Hcs]::Exists('6f1c9a52-3d47-4e0b-9b1e-7a5d2c8e4f10')
    #>
    [CmdletBinding()]
    param()
    Assert-VmbmmioHyperV
    if ('Vmbmmio.Hcs' -as [type]) { return }
    Add-Type -TypeDefinition @'
using System;
using System.Runtime.InteropServices;

namespace Vmbmmio
{
    public static class Hcs
    {
        const string Dll = "computecore.dll";
        const uint GENERIC_ALL = 0x10000000;
        // HCS_E_SYSTEM_NOT_FOUND: no compute system with that id.
        public const int SystemNotFound = unchecked((int)0x8037010E);

        [DllImport(Dll, ExactSpelling = true)]
        static extern IntPtr HcsCreateOperation(IntPtr context, IntPtr callback);
        [DllImport(Dll, ExactSpelling = true)]
        static extern void HcsCloseOperation(IntPtr operation);
        [DllImport(Dll, ExactSpelling = true, CharSet = CharSet.Unicode)]
        static extern int HcsWaitForOperationResult(IntPtr operation, uint timeoutMs, out IntPtr resultDocument);
        [DllImport(Dll, ExactSpelling = true, CharSet = CharSet.Unicode)]
        static extern int HcsCreateComputeSystem(string id, string configuration, IntPtr operation, IntPtr securityDescriptor, out IntPtr computeSystem);
        [DllImport(Dll, ExactSpelling = true, CharSet = CharSet.Unicode)]
        static extern int HcsOpenComputeSystem(string id, uint requestedAccess, out IntPtr computeSystem);
        [DllImport(Dll, ExactSpelling = true, CharSet = CharSet.Unicode)]
        static extern int HcsStartComputeSystem(IntPtr computeSystem, IntPtr operation, string options);
        [DllImport(Dll, ExactSpelling = true, CharSet = CharSet.Unicode)]
        static extern int HcsTerminateComputeSystem(IntPtr computeSystem, IntPtr operation, string options);
        [DllImport(Dll, ExactSpelling = true, CharSet = CharSet.Unicode)]
        static extern int HcsGetComputeSystemProperties(IntPtr computeSystem, IntPtr operation, string propertyQuery);
        [DllImport(Dll, ExactSpelling = true)]
        static extern void HcsCloseComputeSystem(IntPtr computeSystem);
        [DllImport(Dll, ExactSpelling = true, CharSet = CharSet.Unicode)]
        static extern int HcsGrantVmAccess(string vmId, string filePath);
        [DllImport(Dll, ExactSpelling = true, CharSet = CharSet.Unicode)]
        static extern int HcsRevokeVmAccess(string vmId, string filePath);
        [DllImport("kernel32.dll")]
        static extern IntPtr LocalFree(IntPtr memory);

        static string TakeString(IntPtr document)
        {
            if (document == IntPtr.Zero) { return null; }
            string text = Marshal.PtrToStringUni(document);
            LocalFree(document);
            return text;
        }

        static Exception Failure(string what, int hr, string document)
        {
            string message = String.Format("{0} failed: HRESULT 0x{1:X8}", what, hr);
            if (!String.IsNullOrEmpty(document)) { message += " " + document; }
            Exception error = new InvalidOperationException(message);
            error.Data["HResult"] = hr;
            return error;
        }

        // Starts one asynchronous HCS call on a fresh operation and waits for its result.
        delegate int Call(IntPtr operation);
        static string Run(string what, uint timeoutMs, Call start)
        {
            IntPtr operation = HcsCreateOperation(IntPtr.Zero, IntPtr.Zero);
            if (operation == IntPtr.Zero) { throw new InvalidOperationException("HcsCreateOperation failed"); }
            try
            {
                int hr = start(operation);
                if (hr < 0) { throw Failure(what, hr, null); }
                IntPtr document;
                hr = HcsWaitForOperationResult(operation, timeoutMs, out document);
                string text = TakeString(document);
                if (hr < 0) { throw Failure(what, hr, text); }
                return text;
            }
            finally { HcsCloseOperation(operation); }
        }

        static IntPtr Open(string id)
        {
            IntPtr system;
            int hr = HcsOpenComputeSystem(id, GENERIC_ALL, out system);
            if (hr < 0) { throw Failure("HcsOpenComputeSystem(" + id + ")", hr, null); }
            return system;
        }

        // True when a compute system with this id exists; other failures are thrown.
        public static bool Exists(string id)
        {
            IntPtr system;
            int hr = HcsOpenComputeSystem(id, GENERIC_ALL, out system);
            if (hr == SystemNotFound) { return false; }
            if (hr < 0) { throw Failure("HcsOpenComputeSystem(" + id + ")", hr, null); }
            HcsCloseComputeSystem(system);
            return true;
        }

        // Creates the compute system and closes the handle: with
        // ShouldTerminateOnLastHandleClosed false in the document, the VM stays (not started).
        public static string Create(string id, string configuration, uint timeoutMs)
        {
            IntPtr system = IntPtr.Zero;
            try
            {
                return Run("HcsCreateComputeSystem(" + id + ")", timeoutMs,
                    delegate (IntPtr op) { return HcsCreateComputeSystem(id, configuration, op, IntPtr.Zero, out system); });
            }
            finally { if (system != IntPtr.Zero) { HcsCloseComputeSystem(system); } }
        }

        static string OnSystem(string what, string id, uint timeoutMs, Func<IntPtr, IntPtr, int> call)
        {
            IntPtr system = Open(id);
            try { return Run(what + "(" + id + ")", timeoutMs, delegate (IntPtr op) { return call(system, op); }); }
            finally { HcsCloseComputeSystem(system); }
        }

        public static string Start(string id, uint timeoutMs)
        {
            return OnSystem("HcsStartComputeSystem", id, timeoutMs, delegate (IntPtr s, IntPtr op) { return HcsStartComputeSystem(s, op, null); });
        }

        public static string Terminate(string id, uint timeoutMs)
        {
            return OnSystem("HcsTerminateComputeSystem", id, timeoutMs, delegate (IntPtr s, IntPtr op) { return HcsTerminateComputeSystem(s, op, null); });
        }

        // query: a System_PropertyQuery JSON document, or null for the basic properties.
        public static string Properties(string id, string query, uint timeoutMs)
        {
            return OnSystem("HcsGetComputeSystemProperties", id, timeoutMs, delegate (IntPtr s, IntPtr op) { return HcsGetComputeSystemProperties(s, op, query); });
        }

        // Lets the VM's worker process open a file (the disk, the kernel, the initrd).
        public static void GrantVmAccess(string vmId, string path)
        {
            int hr = HcsGrantVmAccess(vmId, path);
            if (hr < 0) { throw Failure("HcsGrantVmAccess(" + path + ")", hr, null); }
        }

        public static void RevokeVmAccess(string vmId, string path)
        {
            int hr = HcsRevokeVmAccess(vmId, path);
            if (hr < 0) { throw Failure("HcsRevokeVmAccess(" + path + ")", hr, null); }
        }
    }
}
'@
}

function Get-VmbmmioTestVmState {
    <#
    .SYNOPSIS
        The HCS state of a compute system ('Created', 'Running', 'Stopped', ...), or 'Absent'.
    .PARAMETER VmId
        The compute-system id.
    .EXAMPLE
        Get-VmbmmioTestVmState -VmId 6f1c9a52-3d47-4e0b-9b1e-7a5d2c8e4f10
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param([Parameter(Mandatory)][string]$VmId)
    Import-VmbmmioHcs
    if (-not [Vmbmmio.Hcs]::Exists($VmId)) { return 'Absent' }
    $json = [Vmbmmio.Hcs]::Properties($VmId, $null, 60000)
    if (-not $json) { return 'Unknown' }
    $properties = $json | ConvertFrom-Json
    if ($properties.PSObject.Properties['State']) { return [string]$properties.State }
    'Unknown'
}
