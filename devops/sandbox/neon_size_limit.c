/*
 * The Neon stand-in's project size limit: preloaded (LD_PRELOAD) into the stand-in's postgres processes, it
 * refuses to extend a relation file once the cluster's relation files hold neon.max_cluster_size, with the
 * error a Neon compute raises at that point (neon's pagestore_smgr.c, neon_extend):
 *
 *   ERROR:  could not extend file because project size limit (512 MB) has been exceeded  (SQLSTATE 53100)
 *   HINT:  This limit is defined externally by the project size limit, and internal by the 'max_cluster_size' GUC
 *
 * A vanilla server has no hook where a relation file grows, so this wraps the C library's calls that grow one
 * (pwrite, pwritev, posix_fallocate: what md.c's mdextend and mdzeroextend reach through fd.c, on 14 to 18).
 * A call that writes past the file's end, on a file under base/ or global/ (not a temporary file or a temporary
 * table's), in a backend inside a transaction (not the startup process's redo, the checkpointer, or an
 * autovacuum worker, which Neon exempts too), checks the size first and raises the server's own ERROR, from
 * the same place md.c raises "could not extend file" on a full disk. The size is the sum of the files under
 * base/ and global/ (WAL excluded, as Neon's logical size excludes it), walked at most every WALK_NS per
 * process, plus what this process added since: like Neon's, it may lag what other sessions wrote meanwhile.
 * The limit is the server's neon.max_cluster_size as the session sees it ("512MB"; a bare number is MB, as
 * Neon's GUC; -1, 0 or unset: none).
 *
 * Anything else passes through untouched; so does everything in a process that is not a postgres server (the
 * symbols below missing). Built with: cc -shared -fPIC -O2 -o neon_size_limit.so neon_size_limit.c -ldl
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define WALK_NS 200000000L /* 0.2 s */
#define PG_ERROR 21         /* elog.h's ERROR, 13 and later */
#define PGSIXBIT(ch) (((ch) - '0') & 0x3F)
#define ERRCODE_DISK_FULL \
    (PGSIXBIT('5') + (PGSIXBIT('3') << 6) + (PGSIXBIT('1') << 12) + (PGSIXBIT('0') << 18) + (PGSIXBIT('0') << 24))

/* The server's own functions, found in the process (postgres exports them to extensions). */
static bool (*pg_errstart)(int, const char *);
static int (*pg_errcode)(int);
static int (*pg_errmsg)(const char *, ...);
static int (*pg_errhint)(const char *, ...);
static void (*pg_errfinish)(const char *, int, const char *);
static const char *(*pg_get_config_option)(const char *, bool, bool);
static bool (*pg_is_transaction_state)(void);

static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_posix_fallocate)(int, off_t, off_t);

static bool in_server;
static int exempt = -1; /* this process never checks (an autovacuum worker); -1: not known yet */
static int64_t walked;  /* the relation files' size at the last walk */
static int64_t added;   /* what this process extended them by since */
static struct timespec walked_at;

__attribute__((constructor)) static void find_symbols(void)
{
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_pwritev = dlsym(RTLD_NEXT, "pwritev");
    real_posix_fallocate = dlsym(RTLD_NEXT, "posix_fallocate");
    pg_errstart = dlsym(RTLD_DEFAULT, "errstart");
    pg_errcode = dlsym(RTLD_DEFAULT, "errcode");
    pg_errmsg = dlsym(RTLD_DEFAULT, "errmsg");
    pg_errhint = dlsym(RTLD_DEFAULT, "errhint");
    pg_errfinish = dlsym(RTLD_DEFAULT, "errfinish");
    pg_get_config_option = dlsym(RTLD_DEFAULT, "GetConfigOption");
    pg_is_transaction_state = dlsym(RTLD_DEFAULT, "IsTransactionState");
    in_server = pg_errstart && pg_errcode && pg_errmsg && pg_errhint && pg_errfinish && pg_get_config_option
        && pg_is_transaction_state;
}

/* neon.max_cluster_size in MB; 0: no limit. */
static int64_t limit_mb(void)
{
    const char *value = pg_get_config_option("neon.max_cluster_size", true, false);
    char *unit;
    double number;

    if (value == NULL)
        return 0;
    number = strtod(value, &unit);
    while (*unit == ' ')
        unit++;
    if (strcasecmp(unit, "kB") == 0)
        number /= 1024;
    else if (strcasecmp(unit, "GB") == 0)
        number *= 1024;
    else if (strcasecmp(unit, "TB") == 0)
        number *= 1024 * 1024;
    return number > 0 ? (int64_t) number : 0;
}

static int64_t size_of_directory(const char *path, int depth)
{
    DIR *dir = opendir(path);
    struct dirent *entry;
    struct stat st;
    int64_t total = 0;

    if (dir == NULL)
        return 0;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.' || fstatat(dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (S_ISREG(st.st_mode))
            total += st.st_size;
        else if (S_ISDIR(st.st_mode) && depth > 0 && strcmp(entry->d_name, "pgsql_tmp") != 0) {
            char sub[4096];
            size_t length = strlen(path) + 1 + strlen(entry->d_name) + 1;
            if (length <= sizeof(sub)) {
                memcpy(sub, path, strlen(path));
                sub[strlen(path)] = '/';
                memcpy(sub + strlen(path) + 1, entry->d_name, strlen(entry->d_name) + 1);
                total += size_of_directory(sub, depth - 1);
            }
        }
    }
    closedir(dir);
    return total;
}

/* What the cluster's relation files hold now (a backend's working directory is the data directory). */
static int64_t cluster_size(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    if (walked_at.tv_sec == 0
        || (now.tv_sec - walked_at.tv_sec) * 1000000000L + (now.tv_nsec - walked_at.tv_nsec) > WALK_NS) {
        walked = size_of_directory("base", 1) + size_of_directory("global", 0);
        added = 0;
        walked_at = now;
    }
    return walked + added;
}

/* A relation file the limit counts: under the data directory's base/ or global/, not a temporary one. */
static bool counted_file(int fd)
{
    char link[64], path[4096], cwd[4096];
    ssize_t length;
    const char *name, *rest;
    size_t cwd_length;

    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    length = readlink(link, path, sizeof(path) - 1);
    if (length <= 0 || getcwd(cwd, sizeof(cwd)) == NULL)
        return false;
    path[length] = '\0';
    cwd_length = strlen(cwd);
    if (strncmp(path, cwd, cwd_length) != 0 || path[cwd_length] != '/')
        return false;
    rest = path + cwd_length + 1;
    if (strncmp(rest, "base/", 5) != 0 && strncmp(rest, "global/", 7) != 0)
        return false;
    if (strstr(rest, "pgsql_tmp") != NULL)
        return false;
    name = strrchr(rest, '/') + 1;
    return name[0] != 't'; /* t<backend>_<relfilenode>: a temporary table's, which Neon does not count */
}

static bool is_exempt(void)
{
    if (exempt < 0) {
        /* The process title postgres sets ("postgres: autovacuum worker neondb"). */
        char title[512] = {0};
        int fd = open("/proc/self/cmdline", O_RDONLY);
        ssize_t length = fd >= 0 ? read(fd, title, sizeof(title) - 1) : -1;
        if (fd >= 0)
            close(fd);
        for (ssize_t i = 0; i < length; i++)
            if (title[i] == '\0')
                title[i] = ' ';
        exempt = strstr(title, "autovacuum") != NULL;
    }
    return exempt;
}

/* Before a write or an allocation of ``bytes`` at ``offset`` in ``fd``: Neon's ERROR when it extends a
 * relation file past the limit (it does not return then). */
static void check_extension(int fd, off_t offset, off_t bytes)
{
    struct stat st;
    int64_t limit, size;
    int saved = errno;

    if (!in_server || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || offset + bytes <= st.st_size) {
        errno = saved;
        return;
    }
    if (!pg_is_transaction_state() || is_exempt() || !counted_file(fd) || (limit = limit_mb()) == 0) {
        errno = saved;
        return;
    }
    size = cluster_size();
    if (size >= limit * 1024 * 1024 && pg_errstart(PG_ERROR, NULL)) {
        pg_errcode(ERRCODE_DISK_FULL);
        pg_errmsg("could not extend file because project size limit (%d MB) has been exceeded", (int) limit);
        pg_errhint("This limit is defined externally by the project size limit, and internal by the "
                   "'max_cluster_size' GUC");
        pg_errfinish(__FILE__, __LINE__, "neon_extend");
    }
    added += offset + bytes - st.st_size;
    errno = saved;
}

ssize_t pwrite(int fd, const void *buffer, size_t count, off_t offset)
{
    check_extension(fd, offset, (off_t) count);
    return real_pwrite(fd, buffer, count, offset);
}

ssize_t pwrite64(int fd, const void *buffer, size_t count, off_t offset) __attribute__((alias("pwrite")));

ssize_t pwritev(int fd, const struct iovec *iov, int count, off_t offset)
{
    off_t bytes = 0;
    for (int i = 0; i < count; i++)
        bytes += (off_t) iov[i].iov_len;
    check_extension(fd, offset, bytes);
    return real_pwritev(fd, iov, count, offset);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int count, off_t offset) __attribute__((alias("pwritev")));

int posix_fallocate(int fd, off_t offset, off_t length)
{
    check_extension(fd, offset, length);
    return real_posix_fallocate(fd, offset, length);
}

int posix_fallocate64(int fd, off_t offset, off_t length) __attribute__((alias("posix_fallocate")));
