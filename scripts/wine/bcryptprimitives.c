/*
 * Stand-in for bcryptprimitives.dll, for the Wine smoke test only (scripts/wine-smoke.sh).
 *
 * Rust's standard library imports ProcessPrng from bcryptprimitives.dll on Windows; Wine 8 has
 * no such DLL, so without this stub no Rust program starts under it. ProcessPrng fills the
 * buffer with random bytes and always returns TRUE (Microsoft Learn, "ProcessPrng function");
 * here the bytes come from RtlGenRandom (advapi32's SystemFunction036, Microsoft Learn,
 * "RtlGenRandom function"), which Wine implements. Never shipped, never used on Windows.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
