<#
.SYNOPSIS
    Enables, shows or disables Driver Verifier for vmbmmio.sys only.

.DESCRIPTION
    -Enable runs `verifier /standard /driver vmbmmio.sys`. The standard settings are
    `/flags 0x209BB`, which already contain the two checks this project asks for:
      0x00000002  Force IRQL checking
      0x00020000  DDI compliance checking
    (plus special pool, pool tracking, I/O verification, deadlock detection, DMA checking,
    security checks and miscellaneous checks). /standard is used rather than an explicit
    /flags value because it also turns on KMDF Verifier for a KMDF driver, which /flags does
    not. After the change the script reads the persistent settings back and checks that both
    bits are set for vmbmmio.sys. Note: 0x00200000 is NDIS/WIFI verification, not DDI
    compliance checking.

    -Show prints `verifier /querysettings` (what applies from the next boot) and
    `verifier /query` (what is active now, with counters).

    -Disable runs `verifier /reset` when vmbmmio.sys is the only verified driver. If other
    drivers are verified too, -Enable and -Disable stop and name them unless -Force is given
    (both commands replace or clear the whole list).

    Every change takes effect at the next boot; the script says so. Running -Enable twice
    leaves the settings as they are and says so.

    Public references: Driver Verifier command syntax
    (https://learn.microsoft.com/windows-hardware/drivers/devtest/verifier-command-line),
    DDI compliance checking
    (https://learn.microsoft.com/windows-hardware/drivers/devtest/ddi-compliance-checking),
    Using KMDF Verifier (https://learn.microsoft.com/windows-hardware/drivers/wdf/using-kmdf-verifier).

.PARAMETER Enable
    Verify vmbmmio.sys with the standard settings from the next boot.

.PARAMETER Show
    Print the configured and the active settings.

.PARAMETER Disable
    Stop verifying (verifier /reset) from the next boot.

.PARAMETER Force
    Go ahead even when other drivers are verified too (their verification is replaced or cleared).

.EXAMPLE
    .\Set-VmbmmioVerifier.ps1 -Enable

.EXAMPLE
    .\Set-VmbmmioVerifier.ps1 -Show

.EXAMPLE
    .\Set-VmbmmioVerifier.ps1 -Disable -WhatIf
#>
[CmdletBinding(SupportsShouldProcess, DefaultParameterSetName = 'Show')]
param(
    [Parameter(Mandatory, ParameterSetName = 'Enable')][switch]$Enable,
    [Parameter(ParameterSetName = 'Show')][switch]$Show,
    [Parameter(Mandatory, ParameterSetName = 'Disable')][switch]$Disable,
    [Parameter(ParameterSetName = 'Enable')]
    [Parameter(ParameterSetName = 'Disable')]
    [switch]$Force
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot 'VmbmmioCommon.ps1')

Assert-VmbmmioAdministrator
$driver = (Get-VmbmmioDefault).DriverFile
$irqlChecking = 0x00000002
$ddiCompliance = 0x00020000

# The persistent settings verifier.exe writes (Memory Management key): VerifyDrivers, the
# space-separated image names, and VerifyDriverLevel, the flags. Read only, to report and
# to decide whether anything has to change.
function Get-VerifierRegistrySetting {
    $key = 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager\Memory Management'
    $item = Get-ItemProperty -Path $key -ErrorAction SilentlyContinue
    $drivers = @()
    $level = $null
    if ($item -and $item.PSObject.Properties['VerifyDrivers'] -and $item.VerifyDrivers) {
        $drivers = @(([string]$item.VerifyDrivers).Split(' ', [System.StringSplitOptions]::RemoveEmptyEntries))
    }
    if ($item -and $item.PSObject.Properties['VerifyDriverLevel']) { $level = [int64]$item.VerifyDriverLevel }
    [pscustomobject]@{ Drivers = $drivers; Level = $level }
}

$before = Get-VerifierRegistrySetting
$others = @($before.Drivers | Where-Object { $_ -ne $driver })

$action = 'Show'
if ($Enable) { $action = 'Enable' } elseif ($Disable) { $action = 'Disable' } elseif (-not $Show) { Write-Verbose 'No action given: showing the settings.' }

switch ($action) {
    'Show' {
        Write-Host '== verifier /querysettings (applies from the next boot)'
        (Invoke-VmbmmioNative -FilePath verifier.exe -ArgumentList @('/querysettings') -IgnoreExitCode).Output | ForEach-Object { Write-Host $_ }
        Write-Host '== verifier /query (active now)'
        (Invoke-VmbmmioNative -FilePath verifier.exe -ArgumentList @('/query') -IgnoreExitCode).Output | ForEach-Object { Write-Host $_ }
        $level = 'not set'
        if ($null -ne $before.Level) { $level = ('0x{0:X8}' -f $before.Level) }
        Write-Host "== registry: VerifyDrivers = '$($before.Drivers -join ' ')', VerifyDriverLevel = $level"
    }
    'Enable' {
        $configured = ($before.Drivers -contains $driver) -and ($null -ne $before.Level) -and
            (($before.Level -band $irqlChecking) -ne 0) -and (($before.Level -band $ddiCompliance) -ne 0)
        if ($configured -and $others.Count -eq 0) {
            Write-Host "Driver Verifier is already configured for $driver with IRQL and DDI compliance checking: nothing changed."
            break
        }
        if ($others.Count -gt 0 -and -not $Force) {
            throw ("Driver Verifier is configured for other drivers too ($($others -join ', ')); " +
                "verifier /standard /driver $driver would replace that list. Re-run with -Force to do it anyway.")
        }
        if ($PSCmdlet.ShouldProcess($driver, 'verifier /standard /driver')) {
            # verifier.exe's exit code is not documented; the registry read-back below decides.
            $result = Invoke-VmbmmioNative -FilePath verifier.exe -ArgumentList @('/standard', '/driver', $driver) -IgnoreExitCode
            $result.Output | ForEach-Object { Write-Verbose $_ }
            $after = Get-VerifierRegistrySetting
            if (-not ($after.Drivers -contains $driver)) {
                throw ("verifier /standard /driver $driver did not take (exit code $($result.ExitCode)):`n" + ($result.Output -join "`n"))
            }
            if ($null -ne $after.Level -and ((($after.Level -band $irqlChecking) -eq 0) -or (($after.Level -band $ddiCompliance) -eq 0))) {
                throw ('Driver Verifier is configured, but VerifyDriverLevel 0x{0:X8} lacks IRQL (0x2) or DDI compliance (0x20000) checking.' -f $after.Level)
            }
            Write-Host "Driver Verifier will verify $driver with the standard settings (IRQL and DDI compliance checking included)."
            Write-Warning 'Reboot for Driver Verifier to take effect (Restart-Computer). If it then stops the machine, see docs/testing-on-hyperv.md, "When Driver Verifier fires".'
        }
    }
    'Disable' {
        if ($before.Drivers.Count -eq 0) {
            Write-Host 'Driver Verifier verifies no driver: nothing to disable.'
            break
        }
        if ($others.Count -gt 0 -and -not $Force) {
            throw ("Driver Verifier also verifies $($others -join ', '); verifier /reset would clear those too. " +
                'Re-run with -Force to do it anyway.')
        }
        if ($PSCmdlet.ShouldProcess('Driver Verifier', 'verifier /reset')) {
            $result = Invoke-VmbmmioNative -FilePath verifier.exe -ArgumentList @('/reset') -IgnoreExitCode
            $result.Output | ForEach-Object { Write-Verbose $_ }
            $after = Get-VerifierRegistrySetting
            if ($after.Drivers -contains $driver) {
                throw ("verifier /reset did not take (exit code $($result.ExitCode)):`n" + ($result.Output -join "`n"))
            }
            Write-Host 'Driver Verifier settings cleared.'
            Write-Warning 'Reboot for the change to take effect (Restart-Computer).'
        }
    }
}
