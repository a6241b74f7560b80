/* Stand-in for Windows' bcryptprimitives.dll, which Debian's Wine 8 lacks. Rust's standard
 * library (1.78+) imports ProcessPrng from it, so without this every Rust .exe exits with code
 * 53 under Wine. Test-bed only: never shipped. */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
