/*
 * frames.c: a host program that exchanges a frame with a VM's guest through the vmbmmio
 * region `frames`, using only the C ABI (include/vmbmmio_host.h).
 *
 *   frames [region]          (default region: frames)
 *
 * It lists the VMs with named regions, attaches to the first region of that name (read-write
 * if consumers may write it), writes a frame (header + payload) into the shared memory,
 * publishes the frame's sequence number with a release store, rings the guest's doorbell,
 * waits for the guest's doorbell in answer, reads the frame back, and releases everything.
 *
 * Build (Windows, MSVC): cl /I ..\..\include frames.c vmbmmio_host.lib plus the system
 * libraries `cargo rustc -p vmbmmio-host --lib --crate-type staticlib -- --print
 * native-static-libs` lists (kernel32, ntdll, ...).
 * Build against the test double (any system; scripts/check-c-abi.sh does this):
 *   cc -DVMBMMIO_EXAMPLE_TEST_DOUBLE -I crates/vmbmmio-host/include frames.c \
 *      target/debug/libvmbmmio_host.a -lpthread -ldl -lm
 * Build against the simulated platform (the driver's real core under hvsim, a guest program
 * that answers the frame; scripts/check-c-abi.sh does this too):
 *   cargo rustc -p hvsim --lib --crate-type staticlib
 *   cc -DVMBMMIO_EXAMPLE_SIM -I crates/vmbmmio-host/include frames.c \
 *      target/debug/libhvsim.a -lpthread -ldl -lm
 *
 * A guest program may answer the frame: the same layout at ANSWER_OFFSET, payload bytes XOR
 * ANSWER_XOR, sequence = the one rung (the simulated guest does; with VMBMMIO_EXAMPLE_SIM the
 * answer is required, and so is vmbmmio_sim_stop reporting 0 leaked objects).
 *
 * Exit codes: 0 done, 1 a failed check, 2 setup (no driver, no such region, ...).
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "vmbmmio_host.h"
#ifdef VMBMMIO_EXAMPLE_TEST_DOUBLE
#include "vmbmmio_host_test_double.h"
#endif
#ifdef VMBMMIO_EXAMPLE_SIM
#include "vmbmmio_host_sim.h"
#define ANSWER_REQUIRED 1
#else
#define ANSWER_REQUIRED 0
#endif

/* The frame layout this example and its guest program agree on (all little-endian). */
#define FRAME_MAGIC 0x304D5246u /* "FRM0" */
#define FRAME_MAGIC_OFFSET 0
#define FRAME_LENGTH_OFFSET 4
#define FRAME_SEQUENCE_OFFSET 8 /* u64, written last with release ordering */
#define FRAME_PAYLOAD_OFFSET 64
#define FRAME_PAYLOAD_LENGTH 1024
/* The guest's answer, if its program writes one. */
#define ANSWER_OFFSET 4096
#define ANSWER_XOR 0x5Au

static int failed(int32_t code, const char *what)
{
    fprintf(stderr, "frames: %s failed: %s (%s)\n", what, vmbmmio_last_error_message(),
            vmbmmio_code_name(code));
    return code == VMBMMIO_E_SESSION_CLOSED || code == VMBMMIO_E_RATE_LIMITED ? 1 : 2;
}

static int find_region(vmbmmio_host *host, const char *name, vmbmmio_vm_id *vm,
                       vmbmmio_region_info *region)
{
    vmbmmio_session_info sessions[8];
    size_t count = 0;
    int32_t code = vmbmmio_list(host, sessions, 8, &count);
    if (code != VMBMMIO_OK) {
        return failed(code, "vmbmmio_list");
    }
    if (count > 8) {
        count = 8;
    }
    for (size_t s = 0; s < count; s++) {
        for (uint32_t r = 0; r < sessions[s].region_count; r++) {
            if (strcmp(sessions[s].regions[r].name, name) == 0) {
                *vm = sessions[s].vm_id;
                *region = sessions[s].regions[r];
                return 0;
            }
        }
    }
    fprintf(stderr, "frames: no VM has a region named `%s`\n", name);
    return 2;
}

static int exchange(vmbmmio_attachment *attachment, vmbmmio_view *view, int writable)
{
    uint8_t payload[FRAME_PAYLOAD_LENGTH];
    uint8_t back[FRAME_PAYLOAD_LENGTH];
    uint64_t sequence = 1;
    int32_t code;

    for (size_t i = 0; i < sizeof payload; i++) {
        payload[i] = (uint8_t)(i * 7u + 3u);
    }
    if (writable) {
        if ((code = vmbmmio_view_write(view, FRAME_PAYLOAD_OFFSET, payload, sizeof payload)) != 0 ||
            (code = vmbmmio_view_write_u32(view, FRAME_MAGIC_OFFSET, FRAME_MAGIC)) != 0 ||
            (code = vmbmmio_view_write_u32(view, FRAME_LENGTH_OFFSET, FRAME_PAYLOAD_LENGTH)) != 0 ||
            (code = vmbmmio_view_store_release_u64(view, FRAME_SEQUENCE_OFFSET, sequence)) != 0) {
            return failed(code, "writing the frame");
        }
    }

    /* Register the doorbell event before ringing: the guest's answer then signals it (doorbells
     * that come before any event is registered are counted but wake nobody). */
    code = vmbmmio_set_event(attachment);
    if (code != VMBMMIO_OK) {
        return failed(code, "vmbmmio_set_event");
    }
    code = vmbmmio_ring(attachment, sequence);
    if (code != VMBMMIO_OK) {
        return failed(code, "vmbmmio_ring");
    }
    printf("rang the guest with sequence %" PRIu64 "\n", sequence);

    vmbmmio_doorbells bells;
    code = vmbmmio_wait_doorbell(attachment, 2000, &bells);
    if (code == VMBMMIO_TIMEOUT) {
        fprintf(stderr, "frames: no doorbell from the guest within 2 s\n");
        return 1;
    }
    if (code != VMBMMIO_OK) {
        return failed(code, "vmbmmio_wait_doorbell");
    }
    printf("guest doorbell: count %" PRIu64 ", last value %" PRIu64 "\n", bells.count,
           bells.last_value);

    if (writable) {
        code = vmbmmio_view_read(view, FRAME_PAYLOAD_OFFSET, back, sizeof back);
        if (code != VMBMMIO_OK) {
            return failed(code, "vmbmmio_view_read");
        }
        if (memcmp(payload, back, sizeof back) != 0) {
            fprintf(stderr, "frames: the payload read back differs\n");
            return 1;
        }
        printf("frame of %u bytes read back intact\n", (unsigned)FRAME_PAYLOAD_LENGTH);

        /* The answer's sequence is written last: acquire it before reading the rest. */
        uint64_t answered = 0;
        uint32_t magic = 0;
        code = vmbmmio_view_load_acquire_u64(view, ANSWER_OFFSET + FRAME_SEQUENCE_OFFSET, &answered);
        if (code == VMBMMIO_OK) {
            code = vmbmmio_view_read_u32(view, ANSWER_OFFSET + FRAME_MAGIC_OFFSET, &magic);
        }
        if (code != VMBMMIO_OK) {
            return failed(code, "reading the answer");
        }
        if (magic == FRAME_MAGIC && answered == sequence) {
            code = vmbmmio_view_read(view, ANSWER_OFFSET + FRAME_PAYLOAD_OFFSET, back, sizeof back);
            if (code != VMBMMIO_OK) {
                return failed(code, "vmbmmio_view_read");
            }
            for (size_t i = 0; i < sizeof back; i++) {
                if (back[i] != (uint8_t)(payload[i] ^ ANSWER_XOR)) {
                    fprintf(stderr, "frames: the guest's answer differs at byte %zu\n", i);
                    return 1;
                }
            }
            printf("guest answer of %u bytes verified\n", (unsigned)FRAME_PAYLOAD_LENGTH);
        } else if (ANSWER_REQUIRED) {
            fprintf(stderr, "frames: the guest wrote no answer\n");
            return 1;
        }
    }

    /* Every access is bounds-checked: one past the end is refused, not a crash. */
    uint32_t word = 0;
    code = vmbmmio_view_read_u32(view, vmbmmio_view_size(view), &word);
    if (code != VMBMMIO_E_OUT_OF_BOUNDS) {
        fprintf(stderr, "frames: an out-of-bounds read returned %s\n", vmbmmio_code_name(code));
        return 1;
    }
    return 0;
}

static int run(const char *name)
{
    vmbmmio_host *host = NULL;
    int32_t code;

#if defined(VMBMMIO_EXAMPLE_TEST_DOUBLE)
    code = vmbmmio_test_double_host_open(&host);
#elif defined(VMBMMIO_EXAMPLE_SIM)
    code = vmbmmio_sim_host_open(&host);
#else
    code = vmbmmio_host_open(&host);
#endif
    if (code != VMBMMIO_OK) {
        return failed(code, "vmbmmio_host_open");
    }

    vmbmmio_vm_id vm;
    vmbmmio_region_info region;
    int status = find_region(host, name, &vm, &region);
    if (status != 0) {
        vmbmmio_host_close(host);
        return status;
    }
    char vm_text[VMBMMIO_VM_ID_TEXT_CAPACITY];
    vmbmmio_vm_id_format(&vm, vm_text, sizeof vm_text);
    printf("VM %s region %s: %" PRIu64 " bytes, consumers %s\n", vm_text, region.name,
           region.size, region.consumer_writable ? "read-write" : "read-only");

    uint32_t access = region.consumer_writable ? VMBMMIO_ACCESS_READ_WRITE : VMBMMIO_ACCESS_READ;
    vmbmmio_attachment *attachment = NULL;
    code = vmbmmio_attach(host, &vm, name, access, &attachment);
    if (code != VMBMMIO_OK) {
        vmbmmio_host_close(host);
        return failed(code, "vmbmmio_attach");
    }
    vmbmmio_view *view = NULL;
    code = vmbmmio_map(attachment, &view);
    if (code != VMBMMIO_OK) {
        status = failed(code, "vmbmmio_map");
    } else {
        status = exchange(attachment, view, region.consumer_writable != 0);
    }

    code = vmbmmio_detach(attachment);
    if (code != VMBMMIO_OK && status == 0) {
        status = failed(code, "vmbmmio_detach");
    }
    /* The view stays valid memory after detach (no longer shared once the session closes). */
    if (view != NULL && status == 0 && region.consumer_writable) {
        uint32_t magic = 0;
        code = vmbmmio_view_read_u32(view, FRAME_MAGIC_OFFSET, &magic);
        if (code != VMBMMIO_OK || magic != FRAME_MAGIC) {
            fprintf(stderr, "frames: the view lost its data after detach\n");
            status = 1;
        }
    }
    vmbmmio_view_close(view);
    vmbmmio_host_close(host);
    return status;
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "frames";
#ifdef VMBMMIO_EXAMPLE_SIM
    int32_t code = vmbmmio_sim_start();
    if (code != VMBMMIO_OK) {
        return failed(code, "vmbmmio_sim_start");
    }
#endif
    int status = run(name);
#ifdef VMBMMIO_EXAMPLE_SIM
    /* Every handle is closed: the simulated host tears down and counts what is left. */
    int64_t leaked = vmbmmio_sim_stop();
    if (leaked < 0) {
        status = failed((int32_t)leaked, "vmbmmio_sim_stop");
    } else {
        printf("simulator: %" PRId64 " leaked objects\n", leaked);
        if (leaked != 0 && status == 0) {
            status = 1;
        }
    }
#endif
    if (status == 0) {
        printf("frames: done\n");
    }
    return status;
}
