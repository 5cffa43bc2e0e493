/* A simulated NVML (libnvidia-ml.so.1) for tests: just the entry points that pynvml
 * (nvidia-ml-py) calls for gpufleet's agent, with NVML's C signatures, struct layouts and
 * return codes. The simulated host is a `key=value` text file named by $GPUFLEET_FAKE_NVML,
 * re-read on every call so a test can change it while a process runs. See tests/support/nvml.py.
 *
 * Build: gcc -shared -fPIC -O2 -Wall -Wextra -Werror -o libnvidia-ml.so.1 fake_nvml.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <stdatomic.h>

typedef int nvmlReturn_t; /* an enum in nvml.h: int-sized */
enum {
    NVML_SUCCESS = 0, NVML_ERROR_UNINITIALIZED = 1, NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3, NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9, NVML_ERROR_GPU_IS_LOST = 15, NVML_ERROR_UNKNOWN = 999,
};
enum { NVML_TEMPERATURE_GPU = 0 };

typedef struct nvmlDevice_st { int opaque; } *nvmlDevice_t; /* we use its address only */
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct {
    char busIdLegacy[16]; /* NVML_DEVICE_PCI_BUS_ID_BUFFER_V2_SIZE */
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];       /* NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE */
} nvmlPciInfo_t;
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId; /* 0xFFFFFFFF without MIG */
} nvmlProcessInfo_t;

/* Error names (as in NVML_ERROR_<NAME>) and messages, indexed by code; 999 is separate. */
static const struct { const char *name, *text; } ERRORS[] = {
    {"SUCCESS", "Success"}, {"UNINITIALIZED", "Uninitialized"},
    {"INVALID_ARGUMENT", "Invalid Argument"}, {"NOT_SUPPORTED", "Not Supported"},
    {"NO_PERMISSION", "Insufficient Permissions"}, {"ALREADY_INITIALIZED", "Already Initialized"},
    {"NOT_FOUND", "Not Found"}, {"INSUFFICIENT_SIZE", "Insufficient Size"},
    {"INSUFFICIENT_POWER", "Insufficient External Power"},
    {"DRIVER_NOT_LOADED", "Driver Not Loaded"}, {"TIMEOUT", "Timeout"},
    {"IRQ_ISSUE", "Interrupt Request Issue"},
    {"LIBRARY_NOT_FOUND", "NVML Shared Library Not Found"},
    {"FUNCTION_NOT_FOUND", "Function Not Found"}, {"CORRUPTED_INFOROM", "Corrupted infoROM"},
    {"GPU_IS_LOST", "GPU is lost"}, {"RESET_REQUIRED", "GPU requires restart"},
    {"OPERATING_SYSTEM", "The operating system has blocked the request"},
    {"LIB_RM_VERSION_MISMATCH", "RM has detected an NVML/RM version mismatch"},
    {"IN_USE", "In use by another client"}, {"MEMORY", "Insufficient Memory"},
    {"NO_DATA", "No data"}, {"VGPU_ECC_NOT_SUPPORTED", "vGPU operation not supported with ECC"},
    {"INSUFFICIENT_RESOURCES", "Insufficient resources"},
    {"FREQ_NOT_SUPPORTED", "Frequency not supported"},
    {"ARGUMENT_VERSION_MISMATCH", "Argument version mismatch"},
    {"DEPRECATED", "Deprecated"}, {"NOT_READY", "Not ready"}, {"GPU_NOT_FOUND", "GPU not found"},
    {"INVALID_STATE", "Invalid state"}, {"RESET_TYPE_NOT_SUPPORTED", "Reset type not supported"},
};
#define N_ERRORS ((int)(sizeof ERRORS / sizeof ERRORS[0]))
#define MAX_DEVICES 64

static struct nvmlDevice_st g_devices[MAX_DEVICES]; /* handles: stable per index */
static _Atomic int g_refcount;                      /* nvmlInit* minus nvmlShutdown */

/* ---- the host file ------------------------------------------------------------------------ */

typedef struct { char text[32768]; } host_t;

/* Read $GPUFLEET_FAKE_NVML; 0 when it is missing, unreadable or too large. */
static int load(host_t *h) {
    const char *path = getenv("GPUFLEET_FAKE_NVML");
    FILE *f = path && *path ? fopen(path, "r") : NULL;
    if (!f) return 0;
    size_t n = fread(h->text, 1, sizeof h->text - 1, f);
    int ok = !ferror(f) && n < sizeof h->text - 1;
    fclose(f);
    h->text[n] = '\0';
    return ok;
}

/* Copy the value of `key` (trimmed, `#` comment stripped) into out; 0 when absent. */
static int get(const host_t *h, const char *key, char *out, size_t outlen) {
    size_t klen = strlen(key);
    for (const char *line = h->text; *line;) {
        const char *end = strchr(line, '\n');
        if (!end) end = line + strlen(line);
        const char *hash = memchr(line, '#', (size_t)(end - line));
        const char *stop = hash ? hash : end;
        while (line < stop && (*line == ' ' || *line == '\t')) line++;
        if ((size_t)(stop - line) > klen && !strncmp(line, key, klen)) {
            const char *v = line + klen;
            while (v < stop && (*v == ' ' || *v == '\t')) v++;
            if (v < stop && *v == '=') {
                v++;
                while (v < stop && (*v == ' ' || *v == '\t')) v++;
                while (stop > v && (stop[-1] == ' ' || stop[-1] == '\t' || stop[-1] == '\r'))
                    stop--;
                size_t n = (size_t)(stop - v) < outlen - 1 ? (size_t)(stop - v) : outlen - 1;
                memcpy(out, v, n);
                out[n] = '\0';
                return 1;
            }
        }
        line = *end ? end + 1 : end;
    }
    return 0;
}

static int parse_u64(const char *s, unsigned long long *out) {
    char *end;
    *out = strtoull(s, &end, 0);
    return *s && *end == '\0';
}

static int get_u64(const host_t *h, const char *key, unsigned long long *out) {
    char buf[32];
    return get(h, key, buf, sizeof buf) && parse_u64(buf, out);
}

/* The value of "device.<i>.<field>". */
static int dev_get(const host_t *h, unsigned i, const char *field, char *out, size_t outlen) {
    char key[160];
    snprintf(key, sizeof key, "device.%u.%s", i, field);
    return get(h, key, out, outlen);
}

static int dev_u64(const host_t *h, unsigned i, const char *field, unsigned long long *out) {
    char buf[32];
    return dev_get(h, i, field, buf, sizeof buf) && parse_u64(buf, out);
}

/* An NVML error name ("GPU_IS_LOST", "NVML_ERROR_GPU_IS_LOST") or number -> its code. */
static nvmlReturn_t error_code(const char *name) {
    char *end;
    long n = strtol(name, &end, 10);
    if (*name && *end == '\0') return (nvmlReturn_t)n;
    if (!strncmp(name, "NVML_ERROR_", 11)) name += 11;
    for (int c = 0; c < N_ERRORS; c++)
        if (!strcmp(name, ERRORS[c].name)) return c;
    return NVML_ERROR_UNKNOWN;
}

static unsigned device_count(const host_t *h) {
    unsigned long long n = 0;
    get_u64(h, "device_count", &n);
    return n > MAX_DEVICES ? MAX_DEVICES : (unsigned)n;
}

static int is_lost(const host_t *h, unsigned i) {
    unsigned long long lost = 0;
    return dev_u64(h, i, "lost", &lost) && lost;
}

/* Common start of every device query: initialised, host readable, handle valid, device
 * present and not lost, and no error injected for `field`. Sets *i to the device index. */
static nvmlReturn_t begin(host_t *h, nvmlDevice_t dev, const char *field, unsigned *i) {
    char err[64], key[64];
    if (g_refcount <= 0) return NVML_ERROR_UNINITIALIZED;
    uintptr_t p = (uintptr_t)dev, base = (uintptr_t)g_devices;
    if (p < base || p >= base + sizeof g_devices || (p - base) % sizeof g_devices[0])
        return NVML_ERROR_INVALID_ARGUMENT;
    if (!load(h)) return NVML_ERROR_UNKNOWN;
    *i = (unsigned)((p - base) / sizeof g_devices[0]);
    if (*i >= device_count(h) || is_lost(h, *i)) return NVML_ERROR_GPU_IS_LOST;
    snprintf(key, sizeof key, "error.%s", field);
    if (dev_get(h, *i, key, err, sizeof err)) return error_code(err);
    return NVML_SUCCESS;
}

/* Copy a string value into a caller's buffer of `length` bytes. */
static nvmlReturn_t put_string(const char *value, char *buf, unsigned int length) {
    if (!buf) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(value) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(buf, value, strlen(value) + 1);
    return NVML_SUCCESS;
}

/* ---- the NVML API --------------------------------------------------------------------------- */

const char *nvmlErrorString(nvmlReturn_t result) {
    if (result >= 0 && result < N_ERRORS) return ERRORS[result].text;
    return "Unknown Error";
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    host_t h;
    char err[64];
    (void)flags;
    if (!load(&h)) return NVML_ERROR_DRIVER_NOT_LOADED;
    if (get(&h, "init_error", err, sizeof err) && err[0]) return error_code(err);
    g_refcount++;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void) {
    if (g_refcount <= 0) return NVML_ERROR_UNINITIALIZED;
    g_refcount--;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    host_t h;
    char value[128];
    if (g_refcount <= 0) return NVML_ERROR_UNINITIALIZED;
    if (!load(&h)) return NVML_ERROR_UNKNOWN;
    if (!get(&h, "driver_version", value, sizeof value)) return NVML_ERROR_NOT_SUPPORTED;
    return put_string(value, version, length);
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount) {
    host_t h;
    if (g_refcount <= 0) return NVML_ERROR_UNINITIALIZED;
    if (!deviceCount) return NVML_ERROR_INVALID_ARGUMENT;
    if (!load(&h)) return NVML_ERROR_UNKNOWN;
    *deviceCount = device_count(&h);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    host_t h;
    if (g_refcount <= 0) return NVML_ERROR_UNINITIALIZED;
    if (!device) return NVML_ERROR_INVALID_ARGUMENT;
    if (!load(&h)) return NVML_ERROR_UNKNOWN;
    if (index >= device_count(&h)) return NVML_ERROR_INVALID_ARGUMENT;
    if (is_lost(&h, index)) return NVML_ERROR_GPU_IS_LOST;
    *device = &g_devices[index];
    return NVML_SUCCESS;
}

/* A string field of a device: "name" or "uuid". */
static nvmlReturn_t device_string(nvmlDevice_t dev, const char *field, char *buf, unsigned len) {
    host_t h;
    char value[128];
    unsigned i;
    nvmlReturn_t r = begin(&h, dev, field, &i);
    if (r != NVML_SUCCESS) return r;
    if (!dev_get(&h, i, field, value, sizeof value)) return NVML_ERROR_NOT_SUPPORTED;
    return put_string(value, buf, len);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    return device_string(device, "name", name, length);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    return device_string(device, "uuid", uuid, length);
}

/* An unsigned int field of a device, e.g. power_usage in mW. */
static nvmlReturn_t device_uint(nvmlDevice_t dev, const char *field, unsigned int *out) {
    host_t h;
    unsigned long long v;
    unsigned i;
    nvmlReturn_t r = begin(&h, dev, field, &i);
    if (r != NVML_SUCCESS) return r;
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    if (!dev_u64(&h, i, field, &v)) return NVML_ERROR_NOT_SUPPORTED;
    *out = (unsigned int)v;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensorType, unsigned int *temp) {
    if (sensorType != NVML_TEMPERATURE_GPU) return NVML_ERROR_INVALID_ARGUMENT;
    return device_uint(device, "temperature", temp);
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    return device_uint(device, "power_usage", power);
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit) {
    return device_uint(device, "power_limit", limit);
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    host_t h;
    unsigned long long total, used;
    unsigned i;
    nvmlReturn_t r = begin(&h, device, "memory", &i);
    if (r != NVML_SUCCESS) return r;
    if (!memory) return NVML_ERROR_INVALID_ARGUMENT;
    if (!dev_u64(&h, i, "memory_total", &total) || !dev_u64(&h, i, "memory_used", &used))
        return NVML_ERROR_NOT_SUPPORTED;
    memory->total = total;
    memory->used = used;
    memory->free = used < total ? total - used : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *util) {
    host_t h;
    unsigned long long gpu, mem;
    unsigned i;
    nvmlReturn_t r = begin(&h, device, "utilization", &i);
    if (r != NVML_SUCCESS) return r;
    if (!util) return NVML_ERROR_INVALID_ARGUMENT;
    if (!dev_u64(&h, i, "utilization_gpu", &gpu) || !dev_u64(&h, i, "utilization_memory", &mem))
        return NVML_ERROR_NOT_SUPPORTED;
    util->gpu = (unsigned int)gpu;
    util->memory = (unsigned int)mem;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int *major, int *minor) {
    host_t h;
    unsigned long long ma, mi;
    unsigned i;
    nvmlReturn_t r = begin(&h, device, "compute_capability", &i);
    if (r != NVML_SUCCESS) return r;
    if (!major || !minor) return NVML_ERROR_INVALID_ARGUMENT;
    if (!dev_u64(&h, i, "cc_major", &ma) || !dev_u64(&h, i, "cc_minor", &mi))
        return NVML_ERROR_NOT_SUPPORTED;
    *major = (int)ma;
    *minor = (int)mi;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) {
    host_t h;
    char bus_id[32];
    unsigned i, domain = 0, bus = 0, dev = 0, fn = 0;
    nvmlReturn_t r = begin(&h, device, "pci", &i);
    if (r != NVML_SUCCESS) return r;
    if (!pci) return NVML_ERROR_INVALID_ARGUMENT;
    if (!dev_get(&h, i, "pci_bus_id", bus_id, sizeof bus_id)) return NVML_ERROR_NOT_SUPPORTED;
    sscanf(bus_id, "%x:%x:%x.%x", &domain, &bus, &dev, &fn);
    memset(pci, 0, sizeof *pci);
    pci->domain = domain;
    pci->bus = bus;
    pci->device = dev;
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.%X",
             domain & 0xFFFF, bus & 0xFF, dev & 0xFF, fn & 0xF);
    snprintf(pci->busId, sizeof pci->busId, "%s", bus_id);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount,
                                                     nvmlProcessInfo_t *infos) {
    host_t h;
    unsigned long long n = 0;
    unsigned i;
    nvmlReturn_t r = begin(&h, device, "processes", &i);
    if (r != NVML_SUCCESS) return r;
    if (!infoCount) return NVML_ERROR_INVALID_ARGUMENT;
    dev_u64(&h, i, "process_count", &n);
    if (*infoCount < n) { /* includes the size query: *infoCount == 0, infos == NULL */
        *infoCount = (unsigned int)n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    if (n && !infos) return NVML_ERROR_INVALID_ARGUMENT;
    for (unsigned p = 0; p < n; p++) {
        char field[64];
        unsigned long long pid = 0, used = 0;
        snprintf(field, sizeof field, "process.%u.pid", p);
        dev_u64(&h, i, field, &pid);
        snprintf(field, sizeof field, "process.%u.used_memory", p);
        dev_u64(&h, i, field, &used);
        infos[p] = (nvmlProcessInfo_t){(unsigned int)pid, used, 0xFFFFFFFFu, 0xFFFFFFFFu};
    }
    *infoCount = (unsigned int)n;
    return NVML_SUCCESS;
}
