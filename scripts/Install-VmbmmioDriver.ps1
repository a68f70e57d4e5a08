<#
.SYNOPSIS
    Installs (or with -Update, updates) the vmbmmio driver package and its root-enumerated device node.

.DESCRIPTION
    vmbmmio is a root-enumerated software device: no bus reports it, so installing the
    package alone loads nothing; a device node with the INF's hardware id has to exist.

    This script:
      1. finds the package (vmbmmio.inf, .sys, .cat) and reads the class, class GUID and
         hardware id from the INF itself (no id is hard-coded);
      2. checks the host: Windows build 20348 or later (the INF's models are decorated
         NT$ARCH$.10.0...20348), test signing (warns when it is off: the test-signed driver
         would not load);
      3. creates the device node when none carries the hardware id, the way devcon does:
         SetupDiCreateDeviceInfo + the hardware id + DIF_REGISTERDEVICE (SetupAPI through
         Add-Type; works on every supported build and needs no WDK tool). DevGen
         (`devgen /add /bus ROOT /hardwareid ...`, WDK for Windows 11 22H2 and later) does
         the same but ships only with the WDK; pnputil has no command that creates a node;
      4. stages the package and installs it on the node: `pnputil /add-driver <inf> /install`
         (Windows 10 1607 and later);
      5. prints the device's status and the service's state.

    Idempotent: with the package in the driver store and the node present it changes nothing
    and says so; -Update stages and installs the given package again (a newer build has a
    newer DriverVer, which PnP ranks higher) and removes the older vmbmmio packages that no
    device uses any more.

    Public references: PnPUtil command syntax
    (https://learn.microsoft.com/windows-hardware/drivers/devtest/pnputil-command-syntax),
    DevGen (https://learn.microsoft.com/windows-hardware/drivers/devtest/devgen-command-syntax),
    SetupDiCreateDeviceInfoW
    (https://learn.microsoft.com/windows/win32/api/setupapi/nf-setupapi-setupdicreatedeviceinfow).

.PARAMETER PackagePath
    The driver package folder. Default: the current directory if it holds vmbmmio.inf, else
    target\release\vmbmmio_package or target\debug\vmbmmio_package of this checkout.

.PARAMETER Update
    Install the given package even though a vmbmmio package is already installed.

.EXAMPLE
    .\Install-VmbmmioDriver.ps1 -PackagePath C:\vmbmmio\vmbmmio_package

.EXAMPLE
    .\Install-VmbmmioDriver.ps1 -PackagePath C:\vmbmmio\vmbmmio_package -Update -WhatIf
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [string]$PackagePath,
    [switch]$Update
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot 'VmbmmioCommon.ps1')

Assert-VmbmmioAdministrator
$defaults = Get-VmbmmioDefault
$package = Resolve-VmbmmioPackage -PackagePath $PackagePath
$inf = Read-VmbmmioInf -Path $package.Inf
Write-Host "Package: $($package.Path)"
Write-Host "INF: class $($inf.Class) $($inf.ClassGuid), hardware id(s): $($inf.HardwareIds -join ', ')"

$build = [System.Environment]::OSVersion.Version.Build
if ($build -lt 20348) {
    throw "This is Windows build $build; the vmbmmio package installs on build 20348 (Windows Server 2022) and later only."
}
$signing = Get-VmbmmioTestSigningState
if (-not $signing.Active) {
    Write-Warning ('Test signing is not active in this boot: the test-signed vmbmmio.sys will not load ' +
        '(the device shows code 52). Run Enable-VmbmmioTestSigning.ps1 and reboot first.')
}

$nodes = Get-VmbmmioDeviceNode -HardwareId $inf.HardwareIds
$storeBefore = Get-VmbmmioDriverStoreEntry -InfName $defaults.InfName
if ($nodes.Count -gt 0 -and $storeBefore.Count -gt 0 -and -not $Update) {
    Write-Host ('Already installed: device ' + (($nodes | ForEach-Object { $_.InstanceId }) -join ', ') +
        ', package ' + (($storeBefore | ForEach-Object { "$($_.Driver) ($($_.Version))" }) -join ', ') +
        '. Nothing changed; use -Update to install this build.')
} else {
    if ($nodes.Count -eq 0) {
        if ($PSCmdlet.ShouldProcess("ROOT device node with hardware id $($inf.HardwareIds[0])", 'Create')) {
            if (-not ('Vmbmmio.RootDevice' -as [type])) {
                Add-Type -TypeDefinition @'
using System;
using System.ComponentModel;
using System.Runtime.InteropServices;
using System.Text;

namespace Vmbmmio
{
    // Creates a root-enumerated device node, as devcon's "install" does before it installs
    // the driver: a device info element of the INF's class, its hardware id, then
    // DIF_REGISTERDEVICE, which makes the node persistent.
    public static class RootDevice
    {
        [StructLayout(LayoutKind.Sequential)]
        struct SP_DEVINFO_DATA
        {
            public uint cbSize;
            public Guid ClassGuid;
            public uint DevInst;
            public IntPtr Reserved;
        }

        const uint DICD_GENERATE_ID = 0x1;
        const uint SPDRP_HARDWAREID = 0x1;
        const uint DIF_REGISTERDEVICE = 0x19;

        [DllImport("setupapi.dll", SetLastError = true)]
        static extern IntPtr SetupDiCreateDeviceInfoList(ref Guid classGuid, IntPtr hwndParent);
        [DllImport("setupapi.dll", SetLastError = true, CharSet = CharSet.Unicode, EntryPoint = "SetupDiCreateDeviceInfoW")]
        static extern bool SetupDiCreateDeviceInfo(IntPtr set, string deviceName, ref Guid classGuid, string description, IntPtr hwndParent, uint flags, ref SP_DEVINFO_DATA data);
        [DllImport("setupapi.dll", SetLastError = true, CharSet = CharSet.Unicode, EntryPoint = "SetupDiSetDeviceRegistryPropertyW")]
        static extern bool SetupDiSetDeviceRegistryProperty(IntPtr set, ref SP_DEVINFO_DATA data, uint property, byte[] buffer, uint size);
        [DllImport("setupapi.dll", SetLastError = true)]
        static extern bool SetupDiCallClassInstaller(uint function, IntPtr set, ref SP_DEVINFO_DATA data);
        [DllImport("setupapi.dll", SetLastError = true)]
        static extern bool SetupDiDestroyDeviceInfoList(IntPtr set);

        static Exception LastError(string what)
        {
            int code = Marshal.GetLastWin32Error();
            return new Win32Exception(code, what + " failed: " + new Win32Exception(code).Message + " (Win32 error " + code + ")");
        }

        public static void Create(string className, Guid classGuid, string hardwareId)
        {
            IntPtr set = SetupDiCreateDeviceInfoList(ref classGuid, IntPtr.Zero);
            if (set == new IntPtr(-1)) { throw LastError("SetupDiCreateDeviceInfoList"); }
            try
            {
                SP_DEVINFO_DATA data = new SP_DEVINFO_DATA();
                data.cbSize = (uint)Marshal.SizeOf(typeof(SP_DEVINFO_DATA));
                if (!SetupDiCreateDeviceInfo(set, className, ref classGuid, null, IntPtr.Zero, DICD_GENERATE_ID, ref data))
                {
                    throw LastError("SetupDiCreateDeviceInfo");
                }
                // REG_MULTI_SZ: the id, its terminator, and the list terminator.
                byte[] ids = Encoding.Unicode.GetBytes(hardwareId + "\0\0");
                if (!SetupDiSetDeviceRegistryProperty(set, ref data, SPDRP_HARDWAREID, ids, (uint)ids.Length))
                {
                    throw LastError("SetupDiSetDeviceRegistryProperty(SPDRP_HARDWAREID)");
                }
                if (!SetupDiCallClassInstaller(DIF_REGISTERDEVICE, set, ref data))
                {
                    throw LastError("SetupDiCallClassInstaller(DIF_REGISTERDEVICE)");
                }
            }
            finally { SetupDiDestroyDeviceInfoList(set); }
        }
    }
}
'@
            }
            [Vmbmmio.RootDevice]::Create($inf.Class, [Guid]$inf.ClassGuid, $inf.HardwareIds[0])
            Write-Host "Created a root-enumerated device node with hardware id $($inf.HardwareIds[0])."
        }
    } else {
        Write-Host ('Device node already present: ' + (($nodes | ForEach-Object { $_.InstanceId }) -join ', '))
    }

    if ($PSCmdlet.ShouldProcess($package.Inf, 'pnputil /add-driver /install')) {
        # 3010 (ERROR_SUCCESS_REBOOT_REQUIRED): installed, a reboot completes it.
        $result = Invoke-VmbmmioNative -FilePath pnputil.exe -ArgumentList @('/add-driver', $package.Inf, '/install') -AllowedExitCode @(0, 3010)
        $result.Output | ForEach-Object { Write-Verbose $_ }
        Write-Host 'pnputil staged the package and installed it on the matching device.'
        if ($result.ExitCode -eq 3010) { Write-Warning 'pnputil says a reboot is needed to finish the installation.' }
    }

    if ($Update) {
        # Older vmbmmio packages no device uses any more: delete them (without /force, so a
        # package still in use stays and pnputil says why).
        $inUse = @(Get-CimInstance -ClassName Win32_PnPSignedDriver -ErrorAction SilentlyContinue |
                Where-Object { $_.InfName } | ForEach-Object { $_.InfName.ToLowerInvariant() })
        foreach ($entry in (Get-VmbmmioDriverStoreEntry -InfName $defaults.InfName)) {
            if ($inUse -contains $entry.Driver.ToLowerInvariant()) { continue }
            if ($PSCmdlet.ShouldProcess($entry.Driver, "pnputil /delete-driver (unused vmbmmio package $($entry.Version))")) {
                $deleted = Invoke-VmbmmioNative -FilePath pnputil.exe -ArgumentList @('/delete-driver', $entry.Driver) -IgnoreExitCode
                if ($deleted.ExitCode -eq 0 -or $deleted.ExitCode -eq 3010) {
                    Write-Host "Removed the unused package $($entry.Driver)."
                } else {
                    Write-Warning "pnputil kept $($entry.Driver): $($deleted.Output -join ' ')"
                }
            }
        }
    }
}

if (-not $WhatIfPreference) {
    $nodes = Get-VmbmmioDeviceNode -HardwareId $inf.HardwareIds
    foreach ($node in $nodes) {
        $problem = (Get-PnpDeviceProperty -InstanceId $node.InstanceId -KeyName 'DEVPKEY_Device_ProblemCode' -ErrorAction SilentlyContinue).Data
        Write-Host "Device $($node.InstanceId): status $($node.Status), problem code $problem"
    }
    $service = Invoke-VmbmmioNative -FilePath sc.exe -ArgumentList @('query', $defaults.ServiceName) -AllowedExitCode @(0, 1060)
    if ($service.ExitCode -eq 1060) {
        Write-Warning "The $($defaults.ServiceName) service does not exist: the driver was not installed on any device."
    } else {
        $service.Output | Where-Object { $_ -match 'STATE' } | ForEach-Object { Write-Host "Service $($defaults.ServiceName): $($_.Trim())" }
    }
    Write-Host 'Next: Set-VmbmmioVerifier.ps1 -Enable (then reboot), New-VmbmmioTestVm.ps1, Invoke-VmbmmioSmokeTest.ps1.'
}
