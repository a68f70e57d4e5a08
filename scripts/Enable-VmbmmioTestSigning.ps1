<#
.SYNOPSIS
    Turns test signing on and trusts the driver package's test certificate (or undoes both).

.DESCRIPTION
    The vmbmmio package that `cargo make` builds is signed with a self-made test certificate
    (WDRLocalTestCert). Windows loads such a driver only when test signing is on, which needs
    Secure Boot off, and pnputil installs it without a prompt only when the certificate is in
    the machine's Trusted Root and Trusted Publishers stores.

    This script:
      1. stops if Secure Boot is on (bcdedit refuses testsigning then);
      2. sets `bcdedit /set testsigning on` unless it is already configured;
      3. imports the package's .cer into LocalMachine\Root and LocalMachine\TrustedPublisher
         unless a certificate with the same thumbprint is already there;
      4. says whether a reboot is needed (test signing takes effect at the next boot).

    Running it twice changes nothing the second time. -Revert removes the certificate from
    both stores and sets testsigning off.

    Public references: "The TESTSIGNING boot configuration option"
    (https://learn.microsoft.com/windows-hardware/drivers/install/the-testsigning-boot-configuration-option),
    Import-Certificate (https://learn.microsoft.com/powershell/module/pki/import-certificate).

.PARAMETER PackagePath
    The driver package folder (vmbmmio.inf, vmbmmio.sys, vmbmmio.cat, WDRLocalTestCert.cer).
    Default: the current directory if it holds vmbmmio.inf, else target\release\vmbmmio_package
    or target\debug\vmbmmio_package of this checkout.

.PARAMETER CertificatePath
    A .cer file to trust instead of the package's WDRLocalTestCert.cer.

.PARAMETER Revert
    Remove the certificate from both stores and turn test signing off.

.EXAMPLE
    .\Enable-VmbmmioTestSigning.ps1 -PackagePath C:\vmbmmio\vmbmmio_package

.EXAMPLE
    .\Enable-VmbmmioTestSigning.ps1 -WhatIf

.EXAMPLE
    .\Enable-VmbmmioTestSigning.ps1 -Revert
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [string]$PackagePath,
    [string]$CertificatePath,
    [switch]$Revert
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot 'VmbmmioCommon.ps1')

Assert-VmbmmioAdministrator

if (-not $CertificatePath) {
    $package = Resolve-VmbmmioPackage -PackagePath $PackagePath
    if (-not $package.Certificate) {
        throw "The package folder $($package.Path) has no $((Get-VmbmmioDefault).CertificateName); pass -CertificatePath."
    }
    $CertificatePath = $package.Certificate
}
if (-not (Test-Path -LiteralPath $CertificatePath -PathType Leaf)) {
    throw "Certificate file not found: $CertificatePath"
}
$certificate = New-Object System.Security.Cryptography.X509Certificates.X509Certificate2((Resolve-Path -LiteralPath $CertificatePath).Path)
$thumbprint = $certificate.Thumbprint
Write-Host "Certificate: $($certificate.Subject) (thumbprint $thumbprint)"

$stores = @('Root', 'TrustedPublisher')
$rebootNeeded = $false
$state = Get-VmbmmioTestSigningState

if ($Revert) {
    foreach ($store in $stores) {
        $item = "Cert:\LocalMachine\$store\$thumbprint"
        if (Test-Path -LiteralPath $item) {
            if ($PSCmdlet.ShouldProcess("LocalMachine\$store", "Remove certificate $thumbprint")) {
                Remove-Item -LiteralPath $item
                Write-Host "Removed the certificate from LocalMachine\$store."
            }
        } else {
            Write-Host "LocalMachine\$store does not hold the certificate: nothing to remove."
        }
    }
    if ($state.Configured -or $state.Active) {
        if ($PSCmdlet.ShouldProcess('boot configuration {current}', 'bcdedit /set testsigning off')) {
            $null = Invoke-VmbmmioNative -FilePath bcdedit.exe -ArgumentList @('/set', '{current}', 'testsigning', 'off')
            Write-Host 'Test signing is set to off for the next boot.'
            $rebootNeeded = $state.Active
        }
    } else {
        Write-Host 'Test signing is already off.'
    }
} else {
    if ($state.Active) {
        Write-Host 'Test signing is on in this boot.'
    } elseif ($state.Configured) {
        Write-Host 'Test signing is configured but not active yet: reboot.'
        $rebootNeeded = $true
    } else {
        $secureBoot = Get-VmbmmioSecureBootState
        if ($secureBoot -eq 'On') {
            throw ('Secure Boot is on, and Windows does not allow test signing with Secure Boot. ' +
                'Turn Secure Boot off in the firmware; for a Hyper-V VM, on the outer host: ' +
                'Set-VMFirmware -VMName <vm> -EnableSecureBoot Off (with the VM off).')
        }
        if ($PSCmdlet.ShouldProcess('boot configuration {current}', 'bcdedit /set testsigning on')) {
            $null = Invoke-VmbmmioNative -FilePath bcdedit.exe -ArgumentList @('/set', '{current}', 'testsigning', 'on')
            Write-Host 'Test signing is set to on for the next boot.'
            $rebootNeeded = $true
        }
    }
    foreach ($store in $stores) {
        if (Test-Path -LiteralPath "Cert:\LocalMachine\$store\$thumbprint") {
            Write-Host "LocalMachine\$store already trusts the certificate."
            continue
        }
        if ($PSCmdlet.ShouldProcess("LocalMachine\$store", "Import certificate $thumbprint")) {
            if (Get-Command -Name Import-Certificate -ErrorAction SilentlyContinue) {
                $null = Import-Certificate -FilePath $CertificatePath -CertStoreLocation "Cert:\LocalMachine\$store"
            } else {
                $null = Invoke-VmbmmioNative -FilePath certutil.exe -ArgumentList @('-addstore', $store, $CertificatePath)
            }
            Write-Host "Imported the certificate into LocalMachine\$store."
        }
    }
}

if ($rebootNeeded) {
    Write-Warning 'A reboot is needed for the test-signing change to take effect (Restart-Computer).'
} else {
    Write-Host 'No reboot needed.'
}
