<#
.SYNOPSIS
    Creates (not starts) a test VM through the Host Compute Service with the vmbmmio paired device declared.

.DESCRIPTION
    The device host emulates a PCI device that the VM's HCS configuration must declare under
    VirtualMachine.Devices.FlexibleIov, keyed by the device instance GUID, with the emulator
    class GUID as EmulatorId and HostingModel External. Hyper-V Manager (New-VM) cannot
    declare such a device, so the VM is created with the HCS API (computecore.dll, no
    cmdlets; called through a minimal Add-Type wrapper in VmbmmioCommon.ps1).

    The FlexibleIov entry is built from the same values the device host prints: its default
    instance_id and emulator_class_id (docs/devhost.md, "Configuration";
    crates/vmbmmio-devhost/src/vm_config.rs builds the entry). The device host has no
    command that prints only that entry, so pass -InstanceId/-EmulatorClassId when you run
    the device host with other values; Invoke-VmbmmioSmokeTest.ps1 compares the entry the
    device host prints with this VM's.

    The VM:
      - boots a disk (-VhdxPath: UEFI, SCSI, Secure Boot off) or a Linux kernel directly
        (-KernelPath, -InitrdPath, -KernelCmdLine; HCS schema 2.2 LinuxKernelDirect);
      - has COM1 on the named pipe \\.\pipe\vmbmmio-<vm id>-com1 (its console);
      - has a network adapter only with -NetworkEndpointId (an existing HNS endpoint; the
        HCS attaches no network otherwise), which -GuestSsh of the smoke test needs;
      - is created with ShouldTerminateOnLastHandleClosed false, so it stays after this
        script exits, in the Created state, until it is started, terminated, or the host
        reboots (HCS compute systems do not persist across reboots);
      - is granted access to its disk or kernel files (HcsGrantVmAccess); -Remove revokes it.

    For a Linux guest the vmbmmio guest agent needs a kernel with the VMBus driver
    (CONFIG_HYPERV_VMBUS; on kernels that predate that option, CONFIG_HYPERV), Hyper-V's
    virtual PCI bus (CONFIG_PCI_HYPERV) and the generic Hyper-V UIO driver
    (CONFIG_UIO_HV_GENERIC, module uio_hv_generic): docs/guest-agent.md.

    Idempotent: if a compute system with the id exists, it is left alone (reported with its
    state) unless -Force replaces a stopped or created one. The configuration and what was
    granted are saved in the state directory (default %ProgramData%\vmbmmio-test).

    Public references: HcsCreateComputeSystem
    (https://learn.microsoft.com/virtualization/api/hcs/reference/hcscreatecomputesystem),
    the HCS JSON schema (https://learn.microsoft.com/virtualization/api/hcs/schemareference),
    HcsGrantVmAccess (https://learn.microsoft.com/virtualization/api/hcs/reference/hcsgrantvmaccess).

.PARAMETER VmId
    The compute-system id (a GUID), which the device host takes as --vm-id.

.PARAMETER VhdxPath
    Boot disk (a VHDX with a UEFI-bootable OS).

.PARAMETER KernelPath
    Linux kernel image to boot directly (instead of a disk).

.PARAMETER InitrdPath
    Initial ramdisk for -KernelPath.

.PARAMETER KernelCmdLine
    Kernel command line for -KernelPath (default: console on COM1).

.PARAMETER MemoryMB
    Guest memory in MiB (default 2048).

.PARAMETER ProcessorCount
    Virtual processors (default 2).

.PARAMETER NetworkEndpointId
    An existing HNS endpoint to attach as the VM's network adapter.

.PARAMETER InstanceId
    The FlexibleIov key: the device host's instance_id (default its default).

.PARAMETER EmulatorClassId
    The FlexibleIov EmulatorId: the device host's emulator_class_id (default its default).

.PARAMETER SchemaVersion
    HCS schema version of the document, Major.Minor (default 2.2, the first with LinuxKernelDirect).

.PARAMETER GuestOs
    Linux (default) or Windows: only changes the advice printed.

.PARAMETER StateDirectory
    Where the configuration and the granted files are recorded.

.PARAMETER Force
    Replace an existing compute system with this id (terminated first).

.PARAMETER Start
    Start the existing VM instead of creating one (start the device host first).

.PARAMETER Remove
    Terminate the VM if it exists, revoke the file access granted, and forget its state.

.EXAMPLE
    .\New-VmbmmioTestVm.ps1 -VhdxPath D:\vms\debian.vhdx

.EXAMPLE
    .\New-VmbmmioTestVm.ps1 -KernelPath D:\vms\bzImage -InitrdPath D:\vms\initrd.img -KernelCmdLine 'console=ttyS0 root=/dev/sda1'

.EXAMPLE
    .\New-VmbmmioTestVm.ps1 -Remove
#>
[CmdletBinding(SupportsShouldProcess, DefaultParameterSetName = 'Disk')]
param(
    [ValidatePattern('^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$')]
    [string]$VmId,
    [Parameter(Mandatory, ParameterSetName = 'Disk')][string]$VhdxPath,
    [Parameter(Mandatory, ParameterSetName = 'Kernel')][string]$KernelPath,
    [Parameter(ParameterSetName = 'Kernel')][string]$InitrdPath,
    [Parameter(ParameterSetName = 'Kernel')][string]$KernelCmdLine = 'console=ttyS0,115200',
    [Parameter(ParameterSetName = 'Disk')]
    [Parameter(ParameterSetName = 'Kernel')]
    [ValidateRange(256, 1048576)][int]$MemoryMB = 2048,
    [Parameter(ParameterSetName = 'Disk')]
    [Parameter(ParameterSetName = 'Kernel')]
    [ValidateRange(1, 64)][int]$ProcessorCount = 2,
    [Parameter(ParameterSetName = 'Disk')]
    [Parameter(ParameterSetName = 'Kernel')]
    [guid]$NetworkEndpointId,
    [Parameter(ParameterSetName = 'Disk')]
    [Parameter(ParameterSetName = 'Kernel')]
    [guid]$InstanceId,
    [Parameter(ParameterSetName = 'Disk')]
    [Parameter(ParameterSetName = 'Kernel')]
    [guid]$EmulatorClassId,
    [Parameter(ParameterSetName = 'Disk')]
    [Parameter(ParameterSetName = 'Kernel')]
    [ValidatePattern('^2\.\d+$')][string]$SchemaVersion = '2.2',
    [Parameter(ParameterSetName = 'Disk')]
    [Parameter(ParameterSetName = 'Kernel')]
    [ValidateSet('Linux', 'Windows')][string]$GuestOs = 'Linux',
    [string]$StateDirectory,
    [Parameter(ParameterSetName = 'Disk')]
    [Parameter(ParameterSetName = 'Kernel')]
    [switch]$Force,
    [Parameter(Mandatory, ParameterSetName = 'Start')][switch]$Start,
    [Parameter(Mandatory, ParameterSetName = 'Remove')][switch]$Remove
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot 'VmbmmioCommon.ps1')

Assert-VmbmmioAdministrator
Import-VmbmmioHcs
$defaults = Get-VmbmmioDefault
if (-not $VmId) { $VmId = $defaults.TestVmId }
if (-not $StateDirectory) { $StateDirectory = $defaults.StateDirectory }
$statePath = Join-Path $StateDirectory "$VmId.json"
$timeoutMs = [uint32]120000

$state = Get-VmbmmioTestVmState -VmId $VmId
Write-Host "Compute system $($VmId): $state"

if ($Start) {
    if ($state -eq 'Absent') { throw "No compute system $VmId; create it with New-VmbmmioTestVm.ps1 first." }
    if ($state -eq 'Running') { Write-Host 'Already running.'; return }
    if ($PSCmdlet.ShouldProcess($VmId, 'HcsStartComputeSystem')) {
        $null = [Vmbmmio.Hcs]::Start($VmId, $timeoutMs)
        Write-Host "Started. Console: \\.\pipe\vmbmmio-$VmId-com1"
    }
    return
}

if ($Remove) {
    if ($state -ne 'Absent') {
        if ($PSCmdlet.ShouldProcess($VmId, 'HcsTerminateComputeSystem')) {
            try {
                $null = [Vmbmmio.Hcs]::Terminate($VmId, $timeoutMs)
                Write-Host 'Terminated.'
            } catch {
                # A VM that never started or already stopped refuses termination; that is fine.
                Write-Host "Terminate: $($_.Exception.Message)"
            }
        }
    }
    if (Test-Path -LiteralPath $statePath) {
        $saved = Get-Content -LiteralPath $statePath -Raw | ConvertFrom-Json
        foreach ($file in @($saved.GrantedFiles)) {
            if ($file -and (Test-Path -LiteralPath $file) -and $PSCmdlet.ShouldProcess($file, 'HcsRevokeVmAccess')) {
                try { [Vmbmmio.Hcs]::RevokeVmAccess($VmId, $file) } catch { Write-Warning $_.Exception.Message }
            }
        }
        if ($PSCmdlet.ShouldProcess($statePath, 'Remove the saved state')) {
            Remove-Item -LiteralPath $statePath
            $configPath = Join-Path $StateDirectory "$VmId.config.json"
            if (Test-Path -LiteralPath $configPath) { Remove-Item -LiteralPath $configPath }
        }
    }
    if (-not $WhatIfPreference) { Write-Host "Compute system $($VmId): $(Get-VmbmmioTestVmState -VmId $VmId)" }
    return
}

if ($state -ne 'Absent') {
    if (-not $Force) {
        Write-Host 'It exists already; nothing changed (use -Force to replace it, -Remove to delete it).'
        return
    }
    if ($state -eq 'Running') { throw "Compute system $VmId is running; stop the smoke test or run -Remove first." }
    if ($PSCmdlet.ShouldProcess($VmId, 'HcsTerminateComputeSystem (replace)')) {
        try { $null = [Vmbmmio.Hcs]::Terminate($VmId, $timeoutMs) } catch { Write-Verbose $_.Exception.Message }
    }
}

# The files the VM worker must be able to open.
$granted = @()
if ($PSCmdlet.ParameterSetName -eq 'Disk') {
    if (-not (Test-Path -LiteralPath $VhdxPath -PathType Leaf)) { throw "Disk not found: $VhdxPath" }
    $VhdxPath = (Resolve-Path -LiteralPath $VhdxPath).Path
    $granted += $VhdxPath
    $chipset = [ordered]@{
        Uefi = [ordered]@{
            BootThis = [ordered]@{ DeviceType = 'ScsiDrive'; DevicePath = 'Primary disk'; DiskNumber = 0 }
        }
    }
    $scsi = [ordered]@{
        'Primary disk' = [ordered]@{
            Attachments = [ordered]@{ '0' = [ordered]@{ Type = 'VirtualDisk'; Path = $VhdxPath } }
        }
    }
} else {
    if (-not (Test-Path -LiteralPath $KernelPath -PathType Leaf)) { throw "Kernel not found: $KernelPath" }
    $KernelPath = (Resolve-Path -LiteralPath $KernelPath).Path
    $granted += $KernelPath
    $direct = [ordered]@{ KernelFilePath = $KernelPath; KernelCmdLine = $KernelCmdLine }
    if ($InitrdPath) {
        if (-not (Test-Path -LiteralPath $InitrdPath -PathType Leaf)) { throw "Initrd not found: $InitrdPath" }
        $InitrdPath = (Resolve-Path -LiteralPath $InitrdPath).Path
        $granted += $InitrdPath
        $direct.InitRdPath = $InitrdPath
    }
    $chipset = [ordered]@{ LinuxKernelDirect = $direct }
    $scsi = $null
}

$instance = $defaults.InstanceId
if ($PSBoundParameters.ContainsKey('InstanceId')) { $instance = $InstanceId.ToString() }
$emulator = $defaults.EmulatorClassId
if ($PSBoundParameters.ContainsKey('EmulatorClassId')) { $emulator = $EmulatorClassId.ToString() }

# VirtualMachine.Devices: the paired device (as the device host prints it), COM1, and the
# disk and network adapter when there are any.
$devices = [ordered]@{
    ComPorts    = [ordered]@{ '0' = [ordered]@{ NamedPipe = "\\.\pipe\vmbmmio-$VmId-com1" } }
    FlexibleIov = [ordered]@{ $instance = [ordered]@{ EmulatorId = $emulator; HostingModel = 'External' } }
}
if ($scsi) { $devices.Scsi = $scsi }
$hasNetwork = $PSBoundParameters.ContainsKey('NetworkEndpointId')
if ($hasNetwork) {
    $devices.NetworkAdapters = [ordered]@{ 'eth0' = [ordered]@{ EndpointId = $NetworkEndpointId.ToString() } }
}
$major, $minor = $SchemaVersion.Split('.')
$document = [ordered]@{
    SchemaVersion                     = [ordered]@{ Major = [int]$major; Minor = [int]$minor }
    Owner                             = 'vmbmmio-test'
    ShouldTerminateOnLastHandleClosed = $false
    VirtualMachine                    = [ordered]@{
        StopOnReset     = $true
        Chipset         = $chipset
        ComputeTopology = [ordered]@{
            Memory    = [ordered]@{ SizeInMB = $MemoryMB; AllowOvercommit = $true }
            Processor = [ordered]@{ Count = $ProcessorCount }
        }
        Devices         = $devices
    }
}
$json = $document | ConvertTo-Json -Depth 12
Write-Verbose $json
Write-Host "Paired device: `"FlexibleIov`": {`"$instance`": {`"EmulatorId`": `"$emulator`", `"HostingModel`": `"External`"}}"

if ($PSCmdlet.ShouldProcess($VmId, 'HcsCreateComputeSystem (not started)')) {
    foreach ($file in $granted) { [Vmbmmio.Hcs]::GrantVmAccess($VmId, $file) }
    $null = [Vmbmmio.Hcs]::Create($VmId, $json, $timeoutMs)
    if (-not (Test-Path -LiteralPath $StateDirectory)) { $null = New-Item -ItemType Directory -Path $StateDirectory }
    $configPath = Join-Path $StateDirectory "$VmId.config.json"
    Set-Content -LiteralPath $configPath -Value $json -Encoding UTF8
    [pscustomobject]@{
        VmId              = $VmId
        ConfigurationPath = $configPath
        GrantedFiles      = $granted
        InstanceId        = $instance
        EmulatorClassId   = $emulator
        ComPipe           = "\\.\pipe\vmbmmio-$VmId-com1"
        GuestOs           = $GuestOs
    } | ConvertTo-Json | Set-Content -LiteralPath $statePath -Encoding UTF8
    Write-Host "Created compute system $VmId (state: $(Get-VmbmmioTestVmState -VmId $VmId)); configuration saved to $configPath."
    Write-Host "Next: start the device host with --vm-id $VmId, wait for 'ready: start the VM now', then .\New-VmbmmioTestVm.ps1 -Start (or run Invoke-VmbmmioSmokeTest.ps1, which does all of it)."
}
if ($GuestOs -eq 'Linux') {
    Write-Host ('Linux guest: its kernel needs CONFIG_HYPERV_VMBUS (older kernels: CONFIG_HYPERV), ' +
        'CONFIG_PCI_HYPERV and CONFIG_UIO_HV_GENERIC (modprobe uio_hv_generic) for vmbmmio-guest; ' +
        'check with: grep -E ''CONFIG_(HYPERV|HYPERV_VMBUS|PCI_HYPERV|UIO_HV_GENERIC)='' /boot/config-$(uname -r)')
} else {
    Write-Host 'Windows guest: its built-in VMBus and virtual PCI drivers are enough to see the device; vmbmmio has no Windows guest agent yet.'
}
if (-not $hasNetwork) {
    Write-Host "No network adapter (no -NetworkEndpointId): reach the guest on its console, \\.\pipe\vmbmmio-$VmId-com1."
}
