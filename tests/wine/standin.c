/* Stand-in for the Windows tools keyferry drives on a node: appcmd.exe (IIS application
   pools), sc.exe (the Service Control Manager), iisreset.exe and shutdown.exe. There is no
   IIS and no product service under Wine, so this records what it was asked and reports
   states the way the real tools print them.

   Which tool it is: its own file name. Where it keeps things: STANDIN_DIR (a Windows path).
   - calls.log: one line per call, the arguments as Windows parses them (CommandLineToArgvW),
     joined with '|', so the test sees exactly what keyferry asked for;
   - pool-<name>: "Started" or "Stopped" (a pool without a file does not exist);
   - svc-<name>: the service's state number (1 stopped, 4 running; no file: no service). */
#include <windows.h>
#include <shellapi.h>
#include <stdio.h>
#include <wchar.h>

static wchar_t dir[1024];

static void path_of(wchar_t *out, size_t n, const wchar_t *prefix, const wchar_t *name) {
    _snwprintf(out, n, L"%ls\\%ls%ls", dir, prefix, name);
}

static int read_text(const wchar_t *path, char *buf, size_t n) {
    FILE *f = _wfopen(path, L"rb");
    if (!f) return 0;
    size_t got = fread(buf, 1, n - 1, f);
    buf[got] = 0;
    fclose(f);
    return 1;
}

static void write_text(const wchar_t *path, const char *text) {
    FILE *f = _wfopen(path, L"wb");
    if (f) { fputs(text, f); fclose(f); }
}

int wmain(void) {
    int argc = 0;
    wchar_t **argv = CommandLineToArgvW(GetCommandLineW(), &argc);
    if (!GetEnvironmentVariableW(L"STANDIN_DIR", dir, 1024)) { fputs("no STANDIN_DIR\n", stderr); return 250; }
    wchar_t self[1024];
    GetModuleFileNameW(NULL, self, 1024);
    const wchar_t *tool = wcsrchr(self, L'\\') ? wcsrchr(self, L'\\') + 1 : self;
    wchar_t logp[1100];
    path_of(logp, 1100, L"calls.log", L"");
    static wchar_t line[8192];
    _snwprintf(line, 8192, L"%ls", tool);
    for (int i = 1; i < argc; i++) {
        size_t used = wcslen(line);
        _snwprintf(line + used, 8192 - used, L"|%ls", argv[i]);
    }
    static char utf8[32768];
    int len = WideCharToMultiByte(CP_UTF8, 0, line, -1, utf8, sizeof utf8 - 2, NULL, NULL);
    FILE *log = _wfopen(logp, L"ab");
    if (log && len > 0) {
        fwrite(utf8, 1, (size_t)len - 1, log);
        fputc('\n', log);
    }
    if (log) fclose(log);
    wchar_t p[1100];
    char state[64];
    if (_wcsicmp(tool, L"appcmd.exe") == 0) {
        if (argc == 5 && !wcscmp(argv[1], L"list") && !wcscmp(argv[2], L"apppool") && !wcscmp(argv[4], L"/text:state")) {
            path_of(p, 1100, L"pool-", argv[3]);
            if (!read_text(p, state, sizeof state)) {
                wprintf(L"ERROR ( message:Cannot find APPPOOL object with identifier \"%ls\". )\r\n", argv[3]);
                return 1;
            }
            printf("%s\r\n", state);
            return 0;
        }
        if (argc == 4 && !wcscmp(argv[2], L"apppool") && !wcsncmp(argv[3], L"/apppool.name:", 14)) {
            const wchar_t *name = argv[3] + 14;
            int stop = !wcscmp(argv[1], L"stop");
            if (!stop && wcscmp(argv[1], L"start")) return 2;
            path_of(p, 1100, L"pool-", name);
            if (!read_text(p, state, sizeof state)) {
                wprintf(L"ERROR ( message:Cannot find APPPOOL object with identifier \"%ls\". )\r\n", name);
                return 1;
            }
            if (!strcmp(state, stop ? "Stopped" : "Started")) {
                wprintf(L"ERROR ( hresult:80070426, message:Command execution failed.\r\nThe service has not been started. )\r\n");
                return 1;
            }
            write_text(p, stop ? "Stopped" : "Started");
            wprintf(L"\"%ls\" successfully %ls.\r\n", name, stop ? L"stopped" : L"started");
            return 0;
        }
        fputs("ERROR ( message:Unknown verb. )\r\n", stdout);
        return 2;
    }
    if (_wcsicmp(tool, L"sc.exe") == 0) {
        if (argc != 3) { fputs("DESCRIPTION:\r\n        SC is a command line program\r\n", stdout); return 1639; }
        path_of(p, 1100, L"svc-", argv[2]);
        if (!read_text(p, state, sizeof state)) {
            printf("[SC] EnumQueryServicesStatus:OpenService FAILED 1060:\r\n\r\nThe specified service does not exist as an installed service.\r\n\r\n");
            return 1060;
        }
        int n = atoi(state);
        if (!wcscmp(argv[1], L"stop")) { write_text(p, "1"); n = 3; }
        else if (!wcscmp(argv[1], L"start")) { write_text(p, "4"); n = 2; }
        else if (wcscmp(argv[1], L"query")) return 1639;
        const char *word = n == 1 ? "STOPPED" : n == 2 ? "START_PENDING" : n == 3 ? "STOP_PENDING" : n == 4 ? "RUNNING" : "PAUSED";
        wprintf(L"\r\nSERVICE_NAME: %ls\r\n        TYPE               : 10  WIN32_OWN_PROCESS\r\n", argv[2]);
        printf("        STATE              : %d  %s\r\n                                (STOPPABLE, NOT_PAUSABLE, ACCEPTS_SHUTDOWN)\r\n        WIN32_EXIT_CODE    : 0  (0x0)\r\n", n, word);
        return 0;
    }
    if (_wcsicmp(tool, L"iisreset.exe") == 0) {
        printf("\r\nAttempting stop...\r\nInternet services successfully stopped\r\nAttempting start...\r\nInternet services successfully restarted\r\n");
        return 0;
    }
    if (_wcsicmp(tool, L"shutdown.exe") == 0) {
        return 0;
    }
    fputs("unknown stand-in\n", stderr);
    return 251;
}
