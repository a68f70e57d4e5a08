<#
.SYNOPSIS
    One map/verify/unmap cycle against the test VM, then the probe, collected into one zipped report folder.

.DESCRIPTION
    Checks, in order (each recorded as PASS, FAIL or SKIP with its evidence):
      1. the vmbmmio service runs and its device node is started (hardware id from the INF);
      2. the control device \\.\vmbmmio opens (CreateFileW with read and write access, as the
         device host opens it; no request is sent, so no driver session is created);
      3. the test VM (New-VmbmmioTestVm.ps1) exists and is not running; a VM that was
         terminated by an earlier run is created again from its saved configuration;
      4. vmbmmio-devhost starts against it and prints 'ready: start the VM now', and the
         FlexibleIov entry it prints matches the VM's;
      5. the VM starts (HCS);
      6. with -GuestSsh: `vmbmmio-guest --json status` and `vmbmmio-guest --json verify
         <region>` run in the guest over ssh (the verify writes a pattern over the region
         and reads it back through the BAR; the agent then releases, so the device host
         unmaps); without it the guest part is SKIP;
      7. the device host's log shows every region mapped (SectionBacked or InterceptFallback)
         and, after the guest released, unmapped;
      8. `vmbmmio-devhost probe --vm <id> --out <report>\probe` (read-only) runs while the VM
         still runs;
      9. the VM is terminated; the device host must then release everything and exit 0 by
         itself (it is stopped by its process id after 60 s if it does not, and that is FAIL).
    Then it collects `verifier /query` and `/querysettings`, the device host's output (its
    driver status counters and guest events are in it), the System event log entries of the
    driver and of services or bug checks that name it since the run started (bug checks since
    the last boot), and the host's build, into the report folder, writes summary.txt and
    summary.json, and zips the folder.

    The channel offer needs a target: -VmbusHandle passes --vmbus-handle; without it the
    device host is run with --offer-loopback (the driver offers the channel back to the host,
    so a guest never sees it: the guest agent's verify is then expected to fail, and the
    mapping can happen only on a platform that forwards the guest's configuration-space
    writes to the emulator). No documented way exists to obtain a VM's VMBus handle
    (README, "Known gap").

    Exit code: 0 when nothing failed, 1 otherwise.

.PARAMETER VendorId
    PCI vendor ID for the emulated device (the device host has no default on purpose).

.PARAMETER DeviceId
    PCI device ID for the emulated device.

.PARAMETER RegionSize
    Region size(s) passed as --region-size (default 4MiB).

.PARAMETER VmId
    The test VM's compute-system id (default: New-VmbmmioTestVm.ps1's default).

.PARAMETER VmbusHandle
    A VMBus handle value for --vmbus-handle; without it --offer-loopback is used.

.PARAMETER DevHostPath
    vmbmmio-devhost.exe (default: current directory, then target\release, target\debug).

.PARAMETER PackagePath
    The driver package folder, to read the hardware id from its INF (optional).

.PARAMETER GuestSsh
    user@host of the guest, for the guest agent's status and verify (optional; the guest
    needs a network adapter, New-VmbmmioTestVm.ps1 -NetworkEndpointId).

.PARAMETER GuestAgent
    The agent's command in the guest (default: vmbmmio-guest, run with sudo).

.PARAMETER GuestRegion
    The region the agent verifies (name or id; default 0).

.PARAMETER BootTimeoutSeconds
    How long to wait for the guest's ssh (default 180).

.PARAMETER MapTimeoutSeconds
    How long to wait for the regions to be mapped (default 120).

.PARAMETER OutputDirectory
    Where the report folder is made (default: .\vmbmmio-smoke-<timestamp>).

.PARAMETER StateDirectory
    The test VM's state directory (default %ProgramData%\vmbmmio-test).

.EXAMPLE
    .\Invoke-VmbmmioSmokeTest.ps1 -VendorId 0x1234 -DeviceId 0x0001

.EXAMPLE
    .\Invoke-VmbmmioSmokeTest.ps1 -VendorId 0x1234 -DeviceId 0x0001 -GuestSsh root@192.168.100.10 -RegionSize 32MiB

.EXAMPLE
    .\Invoke-VmbmmioSmokeTest.ps1 -VendorId 0x1234 -DeviceId 0x0001 -WhatIf
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)][string]$VendorId,
    [Parameter(Mandatory)][string]$DeviceId,
    [string[]]$RegionSize = @('4MiB'),
    [ValidatePattern('^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$')][string]$VmId,
    [string]$VmbusHandle,
    [string]$DevHostPath,
    [string]$PackagePath,
    [string]$GuestSsh,
    [string]$GuestAgent = 'vmbmmio-guest',
    [string]$GuestRegion = '0',
    [ValidateRange(10, 3600)][int]$BootTimeoutSeconds = 180,
    [ValidateRange(5, 3600)][int]$MapTimeoutSeconds = 120,
    [string]$OutputDirectory,
    [string]$StateDirectory
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot 'VmbmmioCommon.ps1')

Assert-VmbmmioAdministrator
Assert-VmbmmioHyperV
Import-VmbmmioHcs
$defaults = Get-VmbmmioDefault
$devHost = Resolve-VmbmmioDevHost -Path $DevHostPath
if (-not $VmId) { $VmId = $defaults.TestVmId }
if (-not $StateDirectory) { $StateDirectory = $defaults.StateDirectory }
if (-not $OutputDirectory) { $OutputDirectory = Join-Path (Get-Location).Path ('vmbmmio-smoke-' + (Get-Date -Format 'yyyyMMdd-HHmmss')) }
$null = New-Item -ItemType Directory -Path $OutputDirectory -Force
$report = (Resolve-Path -LiteralPath $OutputDirectory).Path
$started = Get-Date
$timeoutMs = [uint32]120000
$checks = New-Object System.Collections.ArrayList

function Add-Check {
    param([string]$Name, [ValidateSet('PASS', 'FAIL', 'SKIP')][string]$Result, [string]$Detail)
    [void]$checks.Add([pscustomobject]@{ Check = $Name; Result = $Result; Detail = $Detail })
    Write-Host ('{0,-4} {1}: {2}' -f $Result, $Name, $Detail)
}

function Save-Text {
    param([string]$Name, [string[]]$Lines)
    Set-Content -LiteralPath (Join-Path $report $Name) -Value $Lines -Encoding UTF8
}

function Read-SharedText {
    # Reads a file another process still writes (the device host's redirected output),
    # sharing read and write access; returns its lines, or none while it cannot be read.
    param([string]$Path)
    if (-not (Test-Path -LiteralPath $Path)) { return , @() }
    try {
        $stream = New-Object System.IO.FileStream($Path, [System.IO.FileMode]::Open, [System.IO.FileAccess]::Read, [System.IO.FileShare]::ReadWrite)
        try {
            $reader = New-Object System.IO.StreamReader($stream)
            $text = $reader.ReadToEnd()
        } finally { $stream.Dispose() }
    } catch {
        Write-Verbose "reading $($Path): $($_.Exception.Message)"
        return , @()
    }
    , @($text -split "`r?`n" | Where-Object { $_ -ne '' })
}

function Wait-LogLine {
    # Polls the device host's stdout file for a line matching $Pattern until $Seconds pass or
    # the process exits; returns the matching lines (empty when none).
    param([string]$Path, [string]$Pattern, [int]$Seconds, [System.Diagnostics.Process]$Process)
    $deadline = (Get-Date).AddSeconds($Seconds)
    do {
        $hits = @(Read-SharedText -Path $Path | Where-Object { $_ -match $Pattern })
        if ($hits.Count -gt 0) { return , $hits }
        if ($Process.HasExited) { break }
        Start-Sleep -Milliseconds 500
    } while ((Get-Date) -lt $deadline)
    , @()
}

# 1. Service and device.
$service = Invoke-VmbmmioNative -FilePath sc.exe -ArgumentList @('query', $defaults.ServiceName) -IgnoreExitCode
Save-Text -Name 'service.txt' -Lines $service.Output
if (($service.Output -join ' ') -match 'RUNNING') { Add-Check 'service' 'PASS' "$($defaults.ServiceName) is running" }
else { Add-Check 'service' 'FAIL' "$($defaults.ServiceName) is not running (sc.exe exit $($service.ExitCode); see service.txt)" }

$hardwareIds = Get-VmbmmioHardwareId -PackagePath $PackagePath
$nodes = Get-VmbmmioDeviceNode -HardwareId $hardwareIds
$deviceLines = @()
foreach ($node in $nodes) {
    $problem = (Get-PnpDeviceProperty -InstanceId $node.InstanceId -KeyName 'DEVPKEY_Device_ProblemCode' -ErrorAction SilentlyContinue).Data
    $deviceLines += "$($node.InstanceId) status=$($node.Status) problem=$problem"
}
Save-Text -Name 'device.txt' -Lines $deviceLines
if (@($nodes | Where-Object { $_.Status -eq 'OK' }).Count -gt 0) { Add-Check 'device' 'PASS' ($deviceLines -join '; ') }
elseif ($nodes.Count -eq 0) { Add-Check 'device' 'FAIL' "no device node with $($hardwareIds -join ', ') (run Install-VmbmmioDriver.ps1)" }
else { Add-Check 'device' 'FAIL' ($deviceLines -join '; ') }

# 2. The control device. CreateFileW only: no IOCTL, so the driver creates no session.
if (-not ('Vmbmmio.ControlDevice' -as [type])) {
    Add-Type -TypeDefinition @'
using System;
using System.ComponentModel;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Vmbmmio
{
    public static class ControlDevice
    {
        [DllImport("kernel32.dll", SetLastError = true, CharSet = CharSet.Unicode, EntryPoint = "CreateFileW")]
        static extern SafeFileHandle CreateFile(string name, uint access, uint share, IntPtr security, uint disposition, uint flags, IntPtr template);

        // Opens and closes the device as the device host does (GENERIC_READ | GENERIC_WRITE,
        // shared read/write, OPEN_EXISTING); returns "" or the Win32 error text.
        public static string TryOpen(string path)
        {
            using (SafeFileHandle handle = CreateFile(path, 0xC0000000, 0x3, IntPtr.Zero, 3, 0, IntPtr.Zero))
            {
                if (handle.IsInvalid)
                {
                    int code = Marshal.GetLastWin32Error();
                    return "Win32 error " + code + " (" + new Win32Exception(code).Message + ")";
                }
                return "";
            }
        }
    }
}
'@
}
$openError = [Vmbmmio.ControlDevice]::TryOpen($defaults.ControlDevice)
if ($openError) { Add-Check 'control device' 'FAIL' "$($defaults.ControlDevice): $openError" }
else { Add-Check 'control device' 'PASS' "$($defaults.ControlDevice) opened and closed" }

# 3. The test VM.
$statePath = Join-Path $StateDirectory "$VmId.json"
$vmState = Get-VmbmmioTestVmState -VmId $VmId
$saved = $null
if (Test-Path -LiteralPath $statePath) { $saved = Get-Content -LiteralPath $statePath -Raw | ConvertFrom-Json }
$cycle = $true
if ($vmState -eq 'Running') {
    Add-Check 'test VM' 'FAIL' "$VmId is already running; the device host must exist before the VM starts (New-VmbmmioTestVm.ps1 -Remove, then create it again)"
    $cycle = $false
} elseif ($vmState -eq 'Absent') {
    if (-not $saved) {
        Add-Check 'test VM' 'FAIL' "no compute system $VmId and no saved configuration in $StateDirectory (run New-VmbmmioTestVm.ps1)"
        $cycle = $false
    } elseif ($PSCmdlet.ShouldProcess($VmId, 'HcsCreateComputeSystem from the saved configuration')) {
        foreach ($file in @($saved.GrantedFiles)) { [Vmbmmio.Hcs]::GrantVmAccess($VmId, $file) }
        $null = [Vmbmmio.Hcs]::Create($VmId, (Get-Content -LiteralPath $saved.ConfigurationPath -Raw), $timeoutMs)
        Add-Check 'test VM' 'PASS' "created $VmId again from $($saved.ConfigurationPath)"
    }
} else {
    Add-Check 'test VM' 'PASS' "$VmId exists ($vmState)"
}

# 4-9. The cycle.
$devOut = Join-Path $report 'devhost-stdout.txt'
$devErr = Join-Path $report 'devhost-stderr.txt'
$process = $null
if ($cycle -and $PSCmdlet.ShouldProcess($VmId, 'run vmbmmio-devhost, start the VM, verify, probe, terminate the VM')) {
    $arguments = @('--vm-id', $VmId, '--region-size', ($RegionSize -join ','), '--vendor-id', $VendorId, '--device-id', $DeviceId)
    if ($saved) { $arguments += @('--instance-id', $saved.InstanceId, '--emulator-class-id', $saved.EmulatorClassId) }
    if ($VmbusHandle) { $arguments += @('--vmbus-handle', $VmbusHandle) } else { $arguments += '--offer-loopback' }
    Save-Text -Name 'devhost-command.txt' -Lines ("`"$devHost`" " + ($arguments -join ' '))
    $process = Start-Process -FilePath $devHost -ArgumentList ($arguments -join ' ') -NoNewWindow -PassThru `
        -RedirectStandardOutput $devOut -RedirectStandardError $devErr
    $null = $process.Handle  # keeps the exit code readable after the process ends
    $ready = Wait-LogLine -Path $devOut -Pattern 'ready: start the VM now' -Seconds 60 -Process $process
    if ($ready.Count -eq 0) {
        Add-Check 'device host ready' 'FAIL' 'no "ready: start the VM now" within 60 s (see devhost-stdout.txt, devhost-stderr.txt)'
    } else {
        Add-Check 'device host ready' 'PASS' 'ready: start the VM now'
        $entry = @(Read-SharedText -Path $devOut | Where-Object { $_ -match '"FlexibleIov"' })
        if ($saved -and $entry.Count -gt 0) {
            if ($entry[0] -match [regex]::Escape($saved.InstanceId) -and $entry[0] -match [regex]::Escape($saved.EmulatorClassId)) {
                Add-Check 'FlexibleIov entry' 'PASS' $entry[0].Trim()
            } else {
                Add-Check 'FlexibleIov entry' 'FAIL' "device host prints $($entry[0].Trim()); the VM declares $($saved.InstanceId) / $($saved.EmulatorClassId)"
            }
        }
        try {
            $null = [Vmbmmio.Hcs]::Start($VmId, $timeoutMs)
            Add-Check 'VM start' 'PASS' "started; console \\.\pipe\vmbmmio-$VmId-com1"
        } catch {
            Add-Check 'VM start' 'FAIL' $_.Exception.Message
        }

        $guestRan = $false
        if (-not $GuestSsh) {
            Add-Check 'guest verify' 'SKIP' 'no -GuestSsh: run `sudo vmbmmio-guest verify 0` in the guest yourself and keep its output'
        } elseif (-not (Get-Command -Name ssh.exe -ErrorAction SilentlyContinue)) {
            Add-Check 'guest verify' 'SKIP' 'ssh.exe not found (Add-WindowsCapability -Online -Name OpenSSH.Client~~~~0.0.1.0)'
        } else {
            $sshBase = @('-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5', $GuestSsh)
            $deadline = (Get-Date).AddSeconds($BootTimeoutSeconds)
            $reachable = $false
            while (-not $reachable -and (Get-Date) -lt $deadline) {
                $reachable = ((Invoke-VmbmmioNative -FilePath ssh.exe -ArgumentList ($sshBase + 'true') -IgnoreExitCode).ExitCode -eq 0)
                if (-not $reachable) { Start-Sleep -Seconds 5 }
            }
            if (-not $reachable) {
                Add-Check 'guest verify' 'FAIL' "$GuestSsh not reachable over ssh within $BootTimeoutSeconds s"
            } else {
                $status = Invoke-VmbmmioNative -FilePath ssh.exe -ArgumentList ($sshBase + @('sudo', $GuestAgent, '--json', 'status')) -IgnoreExitCode
                Save-Text -Name 'guest-status.json' -Lines $status.Output
                $verify = Invoke-VmbmmioNative -FilePath ssh.exe -ArgumentList ($sshBase + @('sudo', $GuestAgent, '--json', 'verify', $GuestRegion)) -IgnoreExitCode
                Save-Text -Name 'guest-verify.json' -Lines $verify.Output
                $guestRan = $true
                if ($verify.ExitCode -eq 0) { Add-Check 'guest verify' 'PASS' "region $GuestRegion written and read back through the BAR" }
                else { Add-Check 'guest verify' 'FAIL' "vmbmmio-guest verify exit $($verify.ExitCode) (see guest-verify.json, guest-status.json)" }
            }
        }

        $mapped = Wait-LogLine -Path $devOut -Pattern 'region \d+: (SectionBacked|InterceptFallback)' -Seconds $MapTimeoutSeconds -Process $process
        if ($mapped.Count -gt 0) { Add-Check 'mapped' 'PASS' ($mapped -join '; ') }
        else { Add-Check 'mapped' 'FAIL' "no region mapped within $MapTimeoutSeconds s (see devhost-stdout.txt)" }
        if ($guestRan) {
            $unmapped = Wait-LogLine -Path $devOut -Pattern '(releasing .*unmapping|every range destroyed)' -Seconds 30 -Process $process
            if ($unmapped.Count -gt 0) { Add-Check 'unmapped on release' 'PASS' ($unmapped -join '; ') }
            else { Add-Check 'unmapped on release' 'FAIL' 'the guest released but the device host did not unmap within 30 s' }
        } else {
            Add-Check 'unmapped on release' 'SKIP' 'no guest agent ran'
        }
    }

    # 8. The probe (read-only) while the VM still runs.
    $probeOut = Join-Path $report 'probe'
    $probe = Invoke-VmbmmioNative -FilePath $devHost -ArgumentList @('probe', '--vm', $VmId, '--out', $probeOut) -IgnoreExitCode
    Save-Text -Name 'probe-console.txt' -Lines $probe.Output
    if ($probe.ExitCode -eq 0) { Add-Check 'probe' 'PASS' "report in probe\ (probe-report.json, probe-summary.txt)" }
    else { Add-Check 'probe' 'FAIL' "vmbmmio-devhost probe exit $($probe.ExitCode) (2: it could not run; see probe-console.txt)" }

    # 9. Terminate the VM; the device host must release everything and exit by itself.
    try {
        $null = [Vmbmmio.Hcs]::Terminate($VmId, $timeoutMs)
    } catch {
        Write-Verbose "Terminate: $($_.Exception.Message)"
    }
    if (-not $process.WaitForExit(60000)) {
        Stop-Process -Id $process.Id -Force
        Add-Check 'device host exit' 'FAIL' 'still running 60 s after the VM was terminated; stopped by its process id'
    } elseif ($process.ExitCode -eq 0) {
        Add-Check 'device host exit' 'PASS' 'released everything and exited 0 after the VM stopped'
    } else {
        Add-Check 'device host exit' 'FAIL' "exit code $($process.ExitCode) (see devhost-stdout.txt, devhost-stderr.txt)"
    }
}

# Evidence.
$verifierQuery = Invoke-VmbmmioNative -FilePath verifier.exe -ArgumentList @('/query') -IgnoreExitCode
Save-Text -Name 'verifier-query.txt' -Lines $verifierQuery.Output
$verifierSettings = Invoke-VmbmmioNative -FilePath verifier.exe -ArgumentList @('/querysettings') -IgnoreExitCode
Save-Text -Name 'verifier-querysettings.txt' -Lines $verifierSettings.Output
if (Test-Path -LiteralPath $devOut) {
    Save-Text -Name 'devhost-counters.txt' -Lines @(Read-SharedText -Path $devOut | Where-Object { $_ -match 'driver status|intercept|guest:|KMCL|final states|teardown|released' })
}
$boot = (Get-CimInstance -ClassName Win32_OperatingSystem).LastBootUpTime
$events = @(Get-WinEvent -FilterHashtable @{ LogName = 'System'; StartTime = $boot } -ErrorAction SilentlyContinue | Where-Object {
        ($_.ProviderName -eq $defaults.ServiceName) -or
        ($_.TimeCreated -ge $started.AddMinutes(-5) -and $_.Message -match 'vmbmmio') -or
        ($_.ProviderName -match 'WER-SystemErrorReporting|Kernel-Power' -and $_.Id -in @(1001, 41))
    })
Save-Text -Name 'system-events.txt' -Lines @($events | ForEach-Object { "$($_.TimeCreated.ToString('o')) $($_.ProviderName) $($_.Id) $($_.LevelDisplayName): $($_.Message)" })
$os = Get-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion'
Save-Text -Name 'host.txt' -Lines @(
    "ProductName: $($os.ProductName)",
    "Build: $([System.Environment]::OSVersion.Version)",
    "Test signing: $((Get-VmbmmioTestSigningState).Active)",
    "Secure Boot: $(Get-VmbmmioSecureBootState)",
    "Device host: $devHost",
    "Started: $($started.ToString('o'))")

$summary = @($checks | ForEach-Object { '{0,-4} {1}: {2}' -f $_.Result, $_.Check, $_.Detail })
$failed = @($checks | Where-Object { $_.Result -eq 'FAIL' }).Count
$passed = @($checks | Where-Object { $_.Result -eq 'PASS' }).Count
$skipped = @($checks | Where-Object { $_.Result -eq 'SKIP' }).Count
$summary += "smoke: $passed passed, $failed failed, $skipped skipped"
Save-Text -Name 'summary.txt' -Lines $summary
$checks | ConvertTo-Json | Set-Content -LiteralPath (Join-Path $report 'summary.json') -Encoding UTF8
$zip = "$report.zip"
Compress-Archive -Path (Join-Path $report '*') -DestinationPath $zip -Force
Write-Host "smoke: $passed passed, $failed failed, $skipped skipped"
Write-Host "Report: $report (zipped: $zip). Send the zip back."
if ($failed -gt 0) { exit 1 }
exit 0
