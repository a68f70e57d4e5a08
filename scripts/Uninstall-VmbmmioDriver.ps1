<#
.SYNOPSIS
    Removes the vmbmmio device node(s) and every vmbmmio driver package from the driver store.

.DESCRIPTION
    1. Reads the hardware id from the package's INF when a package is given or found, else
       uses the id the project's INF declares (Root\vmbmmio), and removes every device node
       carrying it, present or not: `pnputil /remove-device <instance id>` (Windows 10 2004
       and later, so every build the package installs on).
    2. Deletes every driver-store package whose original INF is vmbmmio.inf:
       `pnputil /delete-driver oemNN.inf /uninstall` (with -Force also /force).
    3. If the vmbmmio service entry is left behind and stopped, deletes it (`sc.exe delete`).

    Driver Verifier settings, test signing, the certificate and the test VM are separate:
    Set-VmbmmioVerifier.ps1 -Disable, Enable-VmbmmioTestSigning.ps1 -Revert and
    New-VmbmmioTestVm.ps1 -Remove undo them. Running this twice is fine: the second run
    finds nothing and says so. Close every vmbmmio-devhost first: a running device host
    holds the control device open, and the driver vetoes a query-remove while sessions exist.

    Public reference: PnPUtil command syntax
    (https://learn.microsoft.com/windows-hardware/drivers/devtest/pnputil-command-syntax).

.PARAMETER PackagePath
    A driver package folder to read the hardware id from (optional).

.PARAMETER Force
    Pass /force to pnputil /delete-driver (deletes a package even if a device still uses it).

.EXAMPLE
    .\Uninstall-VmbmmioDriver.ps1

.EXAMPLE
    .\Uninstall-VmbmmioDriver.ps1 -WhatIf
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [string]$PackagePath,
    [switch]$Force
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot 'VmbmmioCommon.ps1')

Assert-VmbmmioAdministrator
$defaults = Get-VmbmmioDefault

$hardwareIds = Get-VmbmmioHardwareId -PackagePath $PackagePath
Write-Host "Hardware id(s): $($hardwareIds -join ', ')"

$changed = $false
$nodes = Get-VmbmmioDeviceNode -HardwareId $hardwareIds
if ($nodes.Count -eq 0) {
    Write-Host 'No vmbmmio device node: nothing to remove.'
}
foreach ($node in $nodes) {
    if ($PSCmdlet.ShouldProcess($node.InstanceId, 'pnputil /remove-device')) {
        $null = Invoke-VmbmmioNative -FilePath pnputil.exe -ArgumentList @('/remove-device', $node.InstanceId) -AllowedExitCode @(0, 3010)
        Write-Host "Removed device node $($node.InstanceId)."
        $changed = $true
    }
}

$entries = Get-VmbmmioDriverStoreEntry -InfName $defaults.InfName
if ($entries.Count -eq 0) {
    Write-Host 'No vmbmmio package in the driver store: nothing to delete.'
}
$forceFlag = @()
if ($Force) { $forceFlag = @('/force') }
foreach ($entry in $entries) {
    if ($PSCmdlet.ShouldProcess("$($entry.Driver) (vmbmmio $($entry.Version))", "pnputil /delete-driver /uninstall $($forceFlag -join ' ')")) {
        $arguments = @('/delete-driver', $entry.Driver, '/uninstall') + $forceFlag
        $null = Invoke-VmbmmioNative -FilePath pnputil.exe -ArgumentList $arguments -AllowedExitCode @(0, 3010)
        Write-Host "Deleted driver package $($entry.Driver)."
        $changed = $true
    }
}

$service = Invoke-VmbmmioNative -FilePath sc.exe -ArgumentList @('query', $defaults.ServiceName) -AllowedExitCode @(0, 1060)
if ($service.ExitCode -ne 1060) {
    if (($service.Output -join ' ') -match 'STOPPED') {
        if ($PSCmdlet.ShouldProcess("service $($defaults.ServiceName)", 'sc.exe delete')) {
            $null = Invoke-VmbmmioNative -FilePath sc.exe -ArgumentList @('delete', $defaults.ServiceName)
            Write-Host "Deleted the leftover $($defaults.ServiceName) service entry."
            $changed = $true
        }
    } else {
        Write-Warning ("The $($defaults.ServiceName) service still runs (a device host may hold it open); " +
            'stop every vmbmmio-devhost, reboot, and run this script again.')
    }
}

if ($changed) { Write-Host 'vmbmmio is uninstalled.' } else { Write-Host 'Nothing was installed.' }
