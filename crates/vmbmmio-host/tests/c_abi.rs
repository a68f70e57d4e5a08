//! The C ABI from Rust: the whole flow over the fake, null pointers and bad arguments refused
//! with a code and a message, handles released.
//!
//! Each test is one unsafe block calling the C functions in sequence, as a C program does:
//! splitting it per call would only repeat the same safety argument.
#![allow(clippy::multiple_unsafe_ops_per_block)]

use std::ffi::{CStr, c_char};
use std::ptr::{null, null_mut};

use ::vmbmmio_host::Host;
use ::vmbmmio_host::fake::{DEMO_VM, demo_driver};
use ::vmbmmio_host::ffi::*;

fn message() -> String {
    // SAFETY: the library returns a NUL-terminated string valid until the next failing call.
    unsafe { CStr::from_ptr(vmbmmio_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

fn name(code: i32) -> String {
    // SAFETY: static NUL-terminated strings.
    unsafe { CStr::from_ptr(vmbmmio_code_name(code)) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn the_whole_flow_through_the_c_abi() {
    let fake = demo_driver();
    let host = into_c_handle(Host::with_driver(fake.clone()));
    // SAFETY: (whole test) every pointer passed is a live handle or local from this test.
    unsafe {
        let mut count = 0usize;
        assert_eq!(
            vmbmmio_list(host.as_ref(), null_mut(), 0, Some(&mut count)),
            VMBMMIO_OK
        );
        assert_eq!(count, 1);
        let mut sessions = [std::mem::MaybeUninit::<vmbmmio_session_info>::uninit(); 2];
        assert_eq!(
            vmbmmio_list(host.as_ref(), sessions[0].as_mut_ptr(), 2, Some(&mut count)),
            VMBMMIO_OK
        );
        let session = sessions[0].assume_init();
        assert_eq!(session.region_count, 2);
        let first = CStr::from_ptr(session.regions[0].name.as_ptr());
        assert_eq!(first.to_str().unwrap(), "frames");
        assert_eq!(session.regions[0].consumer_writable, 1);
        assert_eq!(session.regions[1].state, VMBMMIO_REGION_INTERCEPTED);

        let mut text = [0 as c_char; VMBMMIO_VM_ID_TEXT_CAPACITY];
        assert_eq!(
            vmbmmio_vm_id_format(Some(&session.vm_id), text.as_mut_ptr(), text.len()),
            0
        );
        let mut parsed = vmbmmio_vm_id { bytes: [0; 16] };
        assert_eq!(
            vmbmmio_vm_id_parse(text.as_ptr(), Some(&mut parsed)),
            VMBMMIO_OK
        );
        assert_eq!(parsed.bytes, DEMO_VM.to_windows_bytes());

        let mut attachment = null_mut();
        assert_eq!(
            vmbmmio_attach(
                host.as_ref(),
                Some(&parsed),
                c"frames".as_ptr(),
                VMBMMIO_ACCESS_READ_WRITE,
                Some(&mut attachment)
            ),
            VMBMMIO_OK
        );
        let mut info = std::mem::zeroed::<vmbmmio_attachment_info>();
        assert_eq!(
            vmbmmio_attachment_get_info(attachment.as_ref(), Some(&mut info)),
            0
        );
        assert_eq!((info.size, info.access), (65536, VMBMMIO_ACCESS_READ_WRITE));

        let mut view = null_mut();
        assert_eq!(
            vmbmmio_map(attachment.as_ref(), Some(&mut view)),
            VMBMMIO_OK
        );
        assert_eq!(vmbmmio_view_size(view.as_ref()), 65536);
        assert!(!vmbmmio_view_data(view.as_ref()).is_null());
        assert_eq!(vmbmmio_view_write_u32(view.as_ref(), 0, 0xfeed), VMBMMIO_OK);
        let mut word = 0u32;
        assert_eq!(
            vmbmmio_view_read_u32(view.as_ref(), 0, Some(&mut word)),
            VMBMMIO_OK
        );
        assert_eq!(word, 0xfeed);
        assert_eq!(
            vmbmmio_view_store_release_u64(view.as_ref(), 8, 77),
            VMBMMIO_OK
        );
        let mut value = 0u64;
        assert_eq!(
            vmbmmio_view_load_acquire_u64(view.as_ref(), 8, Some(&mut value)),
            0
        );
        assert_eq!(value, 77);
        assert_eq!(
            vmbmmio_view_load_acquire_u64(view.as_ref(), 4, Some(&mut value)),
            VMBMMIO_E_MISALIGNED
        );
        let code = vmbmmio_view_read_u32(view.as_ref(), 65536, Some(&mut word));
        assert_eq!(code, VMBMMIO_E_OUT_OF_BOUNDS);
        assert_eq!(name(code), "VMBMMIO_E_OUT_OF_BOUNDS");
        assert!(message().contains("outside the region"), "{}", message());
        let bytes = [1u8, 2, 3];
        assert_eq!(
            vmbmmio_view_write(view.as_ref(), 100, bytes.as_ptr(), 3),
            VMBMMIO_OK
        );
        let mut back = [0u8; 3];
        assert_eq!(
            vmbmmio_view_read(view.as_ref(), 100, back.as_mut_ptr(), 3),
            VMBMMIO_OK
        );
        assert_eq!(back, bytes);

        // The demo guest rings once when the event is registered and echoes rings + 1.
        let mut bells = std::mem::zeroed::<vmbmmio_doorbells>();
        assert_eq!(
            vmbmmio_wait_doorbell(attachment.as_ref(), 1000, Some(&mut bells)),
            0
        );
        assert_eq!((bells.count, bells.last_value), (1, 0x1234));
        assert_eq!(vmbmmio_ring(attachment.as_ref(), 41), VMBMMIO_OK);
        assert_eq!(
            vmbmmio_wait_doorbell(attachment.as_ref(), 1000, Some(&mut bells)),
            0
        );
        assert_eq!(bells.last_value, 42);
        assert_eq!(
            vmbmmio_wait_doorbell(attachment.as_ref(), 0, Some(&mut bells)),
            VMBMMIO_TIMEOUT
        );
        assert_eq!(
            vmbmmio_take_doorbells(attachment.as_ref(), Some(&mut bells)),
            0
        );
        assert_eq!(bells.count, 0);

        assert_eq!(vmbmmio_detach(attachment), VMBMMIO_OK);
        // The view outlives the attachment and the host.
        vmbmmio_host_close(host);
        assert_eq!(
            vmbmmio_view_read_u32(view.as_ref(), 0, Some(&mut word)),
            VMBMMIO_OK
        );
        assert_eq!(word, 0xfeed);
        vmbmmio_view_close(view);
    }
    assert_eq!(fake.live_attachments(), 0);
    assert_eq!(fake.open_handles(), 0);
    assert_eq!(fake.live_mappings(), 0);
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    let fake = demo_driver();
    let host = into_c_handle(Host::with_driver(fake.clone()));
    // SAFETY: (whole test) NULLs where the functions allow them, live handles otherwise.
    unsafe {
        assert_eq!(vmbmmio_host_open(None), VMBMMIO_E_INVALID_ARGUMENT);
        assert!(message().contains("out is NULL"));
        assert_eq!(
            vmbmmio_list(None, null_mut(), 0, None),
            VMBMMIO_E_INVALID_ARGUMENT
        );
        let mut count = 0;
        assert_eq!(
            vmbmmio_list(host.as_ref(), null_mut(), 3, Some(&mut count)),
            VMBMMIO_E_INVALID_ARGUMENT
        );
        let mut id = vmbmmio_vm_id { bytes: [0; 16] };
        assert_eq!(
            vmbmmio_vm_id_parse(c"not-a-guid".as_ptr(), Some(&mut id)),
            -1
        );
        assert!(message().contains("not a VM id"), "{}", message());
        assert_eq!(vmbmmio_vm_id_parse(null(), Some(&mut id)), -1);
        let demo = vmbmmio_vm_id {
            bytes: DEMO_VM.to_windows_bytes(),
        };
        let mut attachment = null_mut();
        let attach = |name: *const c_char, access: u32, out: &mut *mut vmbmmio_attachment| {
            vmbmmio_attach(host.as_ref(), Some(&demo), name, access, Some(out))
        };
        assert_eq!(attach(null(), VMBMMIO_ACCESS_READ, &mut attachment), -1);
        assert_eq!(attach(c"frames".as_ptr(), 2, &mut attachment), -1);
        assert_eq!(
            attach(c"log".as_ptr(), VMBMMIO_ACCESS_READ_WRITE, &mut attachment),
            VMBMMIO_E_ACCESS_DENIED
        );
        assert!(attachment.is_null());
        assert_eq!(
            attach(c"nope".as_ptr(), VMBMMIO_ACCESS_READ, &mut attachment),
            VMBMMIO_E_REGION_NOT_FOUND
        );
        assert!(message().contains("nope"));
        assert_eq!(
            attach(c"log".as_ptr(), VMBMMIO_ACCESS_READ, &mut attachment),
            0
        );
        let mut view = null_mut();
        assert_eq!(vmbmmio_map(attachment.as_ref(), Some(&mut view)), 0);
        assert_eq!(
            vmbmmio_view_write_u32(view.as_ref(), 0, 1),
            VMBMMIO_E_READ_ONLY
        );
        assert_eq!(vmbmmio_view_read(view.as_ref(), 0, null_mut(), 4), -1);
        assert_eq!(vmbmmio_view_read(view.as_ref(), 0, null_mut(), 0), 0);
        assert_eq!(vmbmmio_ring(None, 1), -1);
        assert_eq!(vmbmmio_view_size(None), 0);
        assert!(vmbmmio_view_data(None).is_null());
        vmbmmio_view_close(view);
        assert_eq!(vmbmmio_detach(attachment), 0);
        assert_eq!(vmbmmio_detach(null_mut()), 0);
        vmbmmio_view_close(null_mut());
        vmbmmio_host_close(null_mut());
        vmbmmio_host_close(host);
    }
    assert_eq!(name(12345), "unknown");
    assert_eq!(fake.open_handles(), 0);
}
