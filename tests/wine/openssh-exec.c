/* Stand-in for Win32-OpenSSH's do_exec_windows with the default shell cmd.exe: runs
   "C:\windows\system32\cmd.exe" /c "<command>" with the client's command inserted verbatim
   (UTF-8 to UTF-16, nothing escaped), stdin, stdout and stderr passed through, its exit code
   returned. The command comes from SSH_ORIGINAL_COMMAND (set by sshd for a ForceCommand). */
#include <windows.h>
#include <stdio.h>
#include <wchar.h>
int wmain(void) {
    static wchar_t command[32768];
    static wchar_t line[32768 + 64];
    DWORD n = GetEnvironmentVariableW(L"SSH_ORIGINAL_COMMAND", command, 32768);
    if (n == 0 || n >= 32768) { fputs("no SSH_ORIGINAL_COMMAND\n", stderr); return 255; }
    _snwprintf(line, sizeof line / sizeof line[0], L"\"C:\\windows\\system32\\cmd.exe\" /c \"%ls\"", command);
    STARTUPINFOW si = { sizeof si };
    si.dwFlags = STARTF_USESTDHANDLES;
    si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
    si.hStdOutput = GetStdHandle(STD_OUTPUT_HANDLE);
    si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
    PROCESS_INFORMATION pi;
    if (!CreateProcessW(NULL, line, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi)) {
        fprintf(stderr, "CreateProcessW failed: %lu\n", GetLastError()); return 255;
    }
    WaitForSingleObject(pi.hProcess, INFINITE);
    DWORD code = 255;
    GetExitCodeProcess(pi.hProcess, &code);
    return (int)code;
}
