/*
 * A 32-bit (ia32) process for tests/tests/exact.rs: its open syscalls by
 * their ia32 numbers (int $0x80), no libc, so gcc -m32 builds it without
 * 32-bit libraries.
 *
 *   ia32-opens DIR N   one successful open of DIR, then N failing opens of
 *                      each kind: open, openat (relative to DIR's fd),
 *                      openat2, creat. Exits 0 when every result was as
 *                      expected, else 1.
 */
#define NR_EXIT 1
#define NR_OPEN 5
#define NR_CLOSE 6
#define NR_CREAT 8
#define NR_OPENAT 295
#define NR_OPENAT2 437
#define O_RDONLY 0
#define O_DIRECTORY 0200000
#define O_CLOEXEC 02000000
#define AT_FDCWD (-100)
#define ENOENT 2

struct open_how {
    unsigned long long flags, mode, resolve;
};

static long sys(long nr, long a, long b, long c, long d) {
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d) : "memory");
    return r;
}

static void quit(int code) {
    sys(NR_EXIT, code, 0, 0, 0);
    for (;;) {
    }
}

/* dst = a "/" b, NUL-terminated (paths stay short). */
static char *join(char *dst, const char *a, const char *b) {
    char *p = dst;
    while (*a) *p++ = *a++;
    *p++ = '/';
    while (*b) *p++ = *b++;
    *p = 0;
    return dst;
}

static long number(const char *s) {
    long n = 0;
    while (*s >= '0' && *s <= '9') n = n * 10 + (*s++ - '0');
    return n;
}

void start_c(long *sp) {
    char **argv = (char **)(sp + 1);
    if (sp[0] != 3) quit(2);
    const char *dir = argv[1];
    long n = number(argv[2]);
    static char open_path[512], openat2_path[512], creat_path[512];
    join(open_path, dir, "ia32-missing-open");
    join(openat2_path, dir, "ia32-missing-openat2");
    join(creat_path, dir, "ia32-no-such-dir/creat");
    struct open_how how = {O_RDONLY | O_CLOEXEC, 0, 0};
    int ok = 1;
    long dirfd = sys(NR_OPEN, (long)dir, O_RDONLY | O_DIRECTORY, 0, 0);
    if (dirfd < 0) quit(1);
    for (long i = 0; i < n; i++) {
        ok &= sys(NR_OPEN, (long)open_path, O_RDONLY, 0, 0) == -ENOENT;
        ok &= sys(NR_OPENAT, dirfd, (long)"ia32-missing-openat", O_RDONLY | O_CLOEXEC, 0) == -ENOENT;
        ok &= sys(NR_OPENAT2, AT_FDCWD, (long)openat2_path, (long)&how, sizeof how) == -ENOENT;
        ok &= sys(NR_CREAT, (long)creat_path, 0640, 0, 0) == -ENOENT;
    }
    sys(NR_CLOSE, dirfd, 0, 0, 0);
    quit(ok ? 0 : 1);
}

/* The kernel enters with argc at the stack pointer. */
__asm__(".globl _start\n"
        "_start:\n"
        "  xorl %ebp, %ebp\n"
        "  movl %esp, %eax\n"
        "  andl $-16, %esp\n"
        "  subl $12, %esp\n"
        "  pushl %eax\n"
        "  call start_c\n"
        "  hlt\n");
