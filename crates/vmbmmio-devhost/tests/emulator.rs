//! The emulator's intercept path: served from the section views, lengths 1/2/4/8 only,
//! bounds-checked, counted per BAR and per region.

use std::sync::{Arc, Mutex};

use vmbmmio_devhost::callbacks::{PciDeviceCallbacks, PciPnpId};
use vmbmmio_devhost::emulator::{Emulator, LifecycleEvent};
use vmbmmio_devhost::hresult::HResult;
use vmbmmio_devhost::layout::BarLayout;
use vmbmmio_devhost::views::{SectionView, ViewError, check_bounds};

struct Bytes(Mutex<Vec<u8>>);

impl SectionView for Bytes {
    fn size(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), ViewError> {
        let bytes = self.0.lock().unwrap();
        check_bounds(offset, out.len(), bytes.len() as u64)?;
        out.copy_from_slice(&bytes[offset as usize..offset as usize + out.len()]);
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), ViewError> {
        let mut bytes = self.0.lock().unwrap();
        check_bounds(offset, data.len(), bytes.len() as u64)?;
        bytes[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
}

/// Regions of 8 KiB and 4 KiB in a 16 KiB BAR at index 2, both views attached.
fn emulator() -> (Emulator, Arc<Bytes>, Arc<Bytes>) {
    let emulator = Emulator::new(
        PciPnpId {
            vendor_id: 1,
            ..Default::default()
        },
        2,
    );
    emulator.set_layout(BarLayout::plan(&[8192, 4096]).unwrap());
    let first = Arc::new(Bytes(Mutex::new(vec![0; 8192])));
    let second = Arc::new(Bytes(Mutex::new(vec![0; 4096])));
    assert!(emulator.attach_view(0, first.clone()));
    assert!(emulator.attach_view(1, second.clone()));
    assert!(!emulator.attach_view(2, second.clone()));
    (emulator, first, second)
}

#[test]
fn reads_and_writes_reach_the_right_region_bytes() {
    let (emulator, first, second) = emulator();
    for (len, offset) in [(1usize, 0x1FFFu64), (2, 0x10), (4, 0x2004), (8, 0x2FF8)] {
        let data: Vec<u8> = (1..=len as u8).collect();
        emulator.write_intercepted_memory(2, offset, &data).unwrap();
        let mut back = vec![0; len];
        emulator
            .read_intercepted_memory(2, offset, &mut back)
            .unwrap();
        assert_eq!(back, data, "{len} bytes at {offset:#x}");
    }
    assert_eq!(first.0.lock().unwrap()[0x1FFF], 1);
    assert_eq!(
        &second.0.lock().unwrap()[0xFF8..],
        &[1, 2, 3, 4, 5, 6, 7, 8]
    );
    let counts = emulator.intercepts();
    assert_eq!((counts.reads[2], counts.writes[2]), (4, 4));
    assert_eq!(counts.per_region, [4, 4]);
    assert_eq!(counts.refused, 0);
}

#[test]
fn padding_reads_zero_and_an_access_may_straddle_regions() {
    let emulator = Emulator::new(PciPnpId::default(), 0);
    // 12 KiB of regions in a 16 KiB BAR: the last page is padding.
    emulator.set_layout(BarLayout::plan(&[4096, 8192]).unwrap());
    let first = Arc::new(Bytes(Mutex::new(vec![0xAA; 4096])));
    let second = Arc::new(Bytes(Mutex::new(vec![0xBB; 8192])));
    emulator.attach_view(0, first);
    emulator.attach_view(1, second.clone());
    let mut word = [0; 8];
    emulator
        .read_intercepted_memory(0, 0xFFC, &mut word)
        .unwrap();
    assert_eq!(word, [0xAA, 0xAA, 0xAA, 0xAA, 0xBB, 0xBB, 0xBB, 0xBB]);
    emulator
        .read_intercepted_memory(0, 0x3000, &mut word)
        .unwrap();
    assert_eq!(word, [0; 8]);
    emulator
        .write_intercepted_memory(0, 0x2FFC, &[1; 8])
        .unwrap();
    assert_eq!(&second.0.lock().unwrap()[0x1FFC..], &[1, 1, 1, 1]);
}

#[test]
fn bad_accesses_are_refused_read_all_ones_and_are_counted() {
    let (emulator, first, _) = emulator();
    let mut three = [0; 3];
    assert_eq!(
        emulator.read_intercepted_memory(2, 0, &mut three),
        Err(HResult::E_INVALIDARG)
    );
    assert_eq!(three, [0xFF; 3]);
    let mut word = [0; 4];
    assert_eq!(
        emulator.read_intercepted_memory(0, 0, &mut word),
        Err(HResult::E_INVALIDARG)
    );
    assert_eq!(
        emulator.read_intercepted_memory(2, 0x3FFE, &mut word),
        Err(HResult::E_INVALIDARG)
    );
    assert_eq!(
        emulator.write_intercepted_memory(2, u64::MAX - 1, &[1, 2, 3, 4]),
        Err(HResult::E_INVALIDARG)
    );
    assert_eq!(
        emulator.write_intercepted_memory(2, 0, &[]),
        Err(HResult::E_INVALIDARG)
    );
    assert_eq!(
        emulator.write_intercepted_memory(9, 0, &[1]),
        Err(HResult::E_INVALIDARG)
    );
    assert!(first.0.lock().unwrap().iter().all(|&byte| byte == 0));
    // A region whose view was detached is no longer served.
    assert!(emulator.detach_view(0).is_some());
    assert_eq!(
        emulator.read_intercepted_memory(2, 0, &mut word),
        Err(HResult::E_UNEXPECTED)
    );
    assert_eq!(word, [0xFF; 4]);
    let counts = emulator.intercepts();
    assert_eq!(counts.refused, 7);
    assert_eq!(
        (counts.reads[0], counts.reads[2], counts.writes[2]),
        (1, 3, 2)
    );
}

#[test]
fn lifecycle_and_details_before_the_layout() {
    let emulator = Emulator::new(PciPnpId::default(), 2);
    let mut bars = [0; 6];
    assert_eq!(emulator.get_details(&mut bars), Err(HResult::E_UNEXPECTED));
    let mut word = [0; 4];
    assert_eq!(
        emulator.read_intercepted_memory(2, 0, &mut word),
        Err(HResult::E_UNEXPECTED)
    );
    emulator.initialize().unwrap();
    emulator
        .set_configuration(&["a".into(), "b".into()])
        .unwrap();
    emulator.start().unwrap();
    emulator.stop();
    emulator.teardown();
    assert_eq!(emulator.configuration(), ["a", "b"]);
    assert!(emulator.started() && emulator.torn_down());
    assert_eq!(
        emulator.events(),
        [
            LifecycleEvent::GetDetails,
            LifecycleEvent::Initialize,
            LifecycleEvent::SetConfiguration,
            LifecycleEvent::Start,
            LifecycleEvent::Stop,
            LifecycleEvent::Teardown
        ]
    );
    // GetDetails writes every slot it is given, even past the six BARs.
    emulator.set_layout(BarLayout::plan(&[4096]).unwrap());
    let mut many = [0xAAAA_AAAA; 8];
    emulator.get_details(&mut many).unwrap();
    assert_eq!(many, [0, 0, 0xFFFF_F00C, 0xFFFF_FFFF, 0, 0, 0, 0]);
}
