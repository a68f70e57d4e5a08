//! Synthetic PE32+ images built byte by byte, in both layouts: as mapped by a loader
//! (RVA = offset) and as a file (sections at other file offsets, mapped through the section
//! table). Field offsets follow the "PE Format" page (learn.microsoft.com/windows/win32/debug/
//! pe-format).
#![allow(dead_code)]

/// `e_lfanew` of the synthetic images.
pub const LFANEW: usize = 0x80;
/// COFF header offset.
pub const COFF: usize = LFANEW + 4;
/// Optional header offset.
pub const OPT: usize = COFF + 20;
/// Optional header size: 112 fixed bytes + 16 data directories.
pub const OPT_SIZE: usize = 112 + 16 * 8;
/// Section table offset.
pub const SECTIONS: usize = OPT + OPT_SIZE;
/// `SizeOfHeaders`.
pub const HEADERS: usize = 0x200;
/// `.text`: RVA, size, file offset.
pub const TEXT_RVA: u32 = 0x1000;
pub const TEXT_SIZE: u32 = 0x1000;
pub const TEXT_FILE: u32 = 0x200;
/// `.edata`: RVA and file offset.
pub const EDATA_RVA: u32 = 0x2000;
pub const EDATA_FILE: u32 = 0x1200;

/// Header field offsets (same in both layouts).
pub const OFF_MACHINE: usize = COFF;
pub const OFF_NUMBER_OF_SECTIONS: usize = COFF + 2;
pub const OFF_SIZE_OF_OPTIONAL: usize = COFF + 16;
pub const OFF_MAGIC: usize = OPT;
pub const OFF_NUMBER_OF_RVA_AND_SIZES: usize = OPT + 108;
pub const OFF_EXPORT_RVA: usize = OPT + 112;
pub const OFF_EXPORT_SIZE: usize = OPT + 116;
/// Export directory field RVAs.
pub const ED_NAME: u32 = EDATA_RVA + 12;
pub const ED_BASE: u32 = EDATA_RVA + 16;
pub const ED_NUMBER_OF_FUNCTIONS: u32 = EDATA_RVA + 20;
pub const ED_NUMBER_OF_NAMES: u32 = EDATA_RVA + 24;
pub const ED_FUNCTIONS: u32 = EDATA_RVA + 28;
pub const ED_NAMES: u32 = EDATA_RVA + 32;
pub const ED_ORDINALS: u32 = EDATA_RVA + 36;

/// One export address table entry.
#[derive(Clone, Debug)]
pub enum Func {
    /// Code at this RVA.
    Code(u32),
    /// A forwarder string.
    Forward(String),
    /// An unused slot (RVA 0).
    Empty,
}

/// What to build.
#[derive(Clone, Debug)]
pub struct Spec {
    pub ordinal_base: u32,
    pub funcs: Vec<Func>,
    /// (name, unbiased ordinal), in name-pointer-table order.
    pub names: Vec<(String, u16)>,
}

impl Spec {
    /// Functions at `.text` + 0x10·i, named in the given order (sorted or not).
    pub fn named(names: &[&str]) -> Self {
        Self {
            ordinal_base: 1,
            funcs: (0..names.len())
                .map(|i| Func::Code(code_rva(i as u32)))
                .collect(),
            names: names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), i as u16))
                .collect(),
        }
    }
}

/// The RVA of synthetic function `i`.
pub fn code_rva(i: u32) -> u32 {
    TEXT_RVA + 0x10 * i
}

/// A built image in both layouts, plus where its arrays are.
#[derive(Clone, Debug)]
pub struct Built {
    pub mapped: Vec<u8>,
    pub file: Vec<u8>,
    pub functions_rva: u32,
    pub names_rva: u32,
    pub ordinals_rva: u32,
    pub edata_len: u32,
    /// RVA of each name string, in table order.
    pub name_rvas: Vec<u32>,
    /// RVA of each forwarder string, by function index.
    pub forwarder_rvas: Vec<Option<u32>>,
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

impl Built {
    pub fn new(spec: &Spec) -> Self {
        let nf = spec.funcs.len() as u32;
        let nn = spec.names.len() as u32;
        // .edata contents, relative to EDATA_RVA.
        let functions = 40;
        let names = functions + 4 * nf;
        let ordinals = names + 4 * nn;
        let mut edata = vec![0u8; (ordinals + 2 * nn) as usize];
        let module_name = edata.len() as u32;
        edata.extend_from_slice(b"synthetic.dll\0");
        let mut forwarder_rvas = vec![None; spec.funcs.len()];
        let mut func_rvas = Vec::new();
        for (i, func) in spec.funcs.iter().enumerate() {
            func_rvas.push(match func {
                Func::Code(rva) => *rva,
                Func::Empty => 0,
                Func::Forward(target) => {
                    let rva = EDATA_RVA + edata.len() as u32;
                    edata.extend_from_slice(target.as_bytes());
                    edata.push(0);
                    forwarder_rvas[i] = Some(rva);
                    rva
                }
            });
        }
        let mut name_rvas = Vec::new();
        for (name, _) in &spec.names {
            name_rvas.push(EDATA_RVA + edata.len() as u32);
            edata.extend_from_slice(name.as_bytes());
            edata.push(0);
        }
        let edata_len = edata.len() as u32;
        put(&mut edata, 12, &(EDATA_RVA + module_name).to_le_bytes());
        put(&mut edata, 16, &spec.ordinal_base.to_le_bytes());
        put(&mut edata, 20, &nf.to_le_bytes());
        put(&mut edata, 24, &nn.to_le_bytes());
        put(&mut edata, 28, &(EDATA_RVA + functions).to_le_bytes());
        put(&mut edata, 32, &(EDATA_RVA + names).to_le_bytes());
        put(&mut edata, 36, &(EDATA_RVA + ordinals).to_le_bytes());
        for (i, rva) in func_rvas.iter().enumerate() {
            put(
                &mut edata,
                (functions + 4 * i as u32) as usize,
                &rva.to_le_bytes(),
            );
        }
        for (i, ((_, ordinal), rva)) in spec.names.iter().zip(&name_rvas).enumerate() {
            put(
                &mut edata,
                (names + 4 * i as u32) as usize,
                &rva.to_le_bytes(),
            );
            put(
                &mut edata,
                (ordinals + 2 * i as u32) as usize,
                &ordinal.to_le_bytes(),
            );
        }

        let mut headers = vec![0u8; HEADERS];
        put(&mut headers, 0, b"MZ");
        put(&mut headers, 0x3C, &(LFANEW as u32).to_le_bytes());
        put(&mut headers, LFANEW, b"PE\0\0");
        put(&mut headers, OFF_MACHINE, &0x8664u16.to_le_bytes());
        put(&mut headers, OFF_NUMBER_OF_SECTIONS, &2u16.to_le_bytes());
        put(
            &mut headers,
            OFF_SIZE_OF_OPTIONAL,
            &(OPT_SIZE as u16).to_le_bytes(),
        );
        put(&mut headers, COFF + 18, &0x2022u16.to_le_bytes()); // DLL | EXECUTABLE | LARGE_ADDRESS_AWARE
        put(&mut headers, OFF_MAGIC, &0x20Bu16.to_le_bytes());
        let size_of_image = EDATA_RVA + edata_len.div_ceil(0x1000) * 0x1000;
        put(&mut headers, OPT + 32, &0x1000u32.to_le_bytes()); // SectionAlignment
        put(&mut headers, OPT + 36, &0x200u32.to_le_bytes()); // FileAlignment
        put(&mut headers, OPT + 56, &size_of_image.to_le_bytes());
        put(&mut headers, OPT + 60, &(HEADERS as u32).to_le_bytes());
        put(
            &mut headers,
            OFF_NUMBER_OF_RVA_AND_SIZES,
            &16u32.to_le_bytes(),
        );
        put(&mut headers, OFF_EXPORT_RVA, &EDATA_RVA.to_le_bytes());
        put(&mut headers, OFF_EXPORT_SIZE, &edata_len.to_le_bytes());
        let section = |name: &[u8; 8], va: u32, size: u32, raw: u32| {
            let mut s = [0u8; 40];
            s[..8].copy_from_slice(name);
            s[8..12].copy_from_slice(&size.to_le_bytes());
            s[12..16].copy_from_slice(&va.to_le_bytes());
            s[16..20].copy_from_slice(&size.to_le_bytes());
            s[20..24].copy_from_slice(&raw.to_le_bytes());
            s
        };
        put(
            &mut headers,
            SECTIONS,
            &section(b".text\0\0\0", TEXT_RVA, TEXT_SIZE, TEXT_FILE),
        );
        put(
            &mut headers,
            SECTIONS + 40,
            &section(b".edata\0\0", EDATA_RVA, edata_len, EDATA_FILE),
        );

        let text = vec![0xCCu8; TEXT_SIZE as usize];
        let mut mapped = vec![0u8; (EDATA_RVA + edata_len) as usize];
        put(&mut mapped, 0, &headers);
        put(&mut mapped, TEXT_RVA as usize, &text);
        put(&mut mapped, EDATA_RVA as usize, &edata);
        let mut file = vec![0u8; (EDATA_FILE + edata_len) as usize];
        put(&mut file, 0, &headers);
        put(&mut file, TEXT_FILE as usize, &text);
        put(&mut file, EDATA_FILE as usize, &edata);
        Self {
            mapped,
            file,
            functions_rva: EDATA_RVA + functions,
            names_rva: EDATA_RVA + names,
            ordinals_rva: EDATA_RVA + ordinals,
            edata_len,
            name_rvas,
            forwarder_rvas,
        }
    }

    /// The file offset of `rva` (headers and `.edata` only).
    pub fn file_offset(rva: u32) -> usize {
        if rva >= EDATA_RVA {
            (rva - EDATA_RVA + EDATA_FILE) as usize
        } else {
            rva as usize
        }
    }

    /// Writes `bytes` at `rva` in both layouts (headers or `.edata`).
    pub fn patch(&mut self, rva: u32, bytes: &[u8]) {
        put(&mut self.mapped, rva as usize, bytes);
        put(&mut self.file, Self::file_offset(rva), bytes);
    }

    pub fn set_u32(&mut self, rva: u32, value: u32) {
        self.patch(rva, &value.to_le_bytes());
    }

    pub fn set_u16(&mut self, rva: u32, value: u16) {
        self.patch(rva, &value.to_le_bytes());
    }
}
