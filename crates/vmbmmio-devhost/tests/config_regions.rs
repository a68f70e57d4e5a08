//! Named regions with an access mode: `--region NAME:SIZE[:ACCESS]`, `[[region]]` tables, the
//! `--region-size` / `region_sizes` shorthand, and one clear error per bad entry, all at once.

use clap::Parser;
use vmbmmio_devhost::config::{
    CliArgs, ConfigError, DeviceHostConfig, Field, Problem, RawSettings, Source, load,
};
use vmbmmio_devhost::driver::{AccessMode, SectionAccess};
use vmbmmio_devhost::guid::Guid;

const VM: &str = "62cdfa57-7648-44f3-b164-98e2da991ec5";

const BASE: [&str; 6] = [
    "--vm-id",
    VM,
    "--vendor-id",
    "0x1af4",
    "--device-id",
    "0x1110",
];

fn cli(extra: &[&str]) -> CliArgs {
    let args = std::iter::once("vmbmmio-devhost")
        .chain(BASE)
        .chain(extra.iter().copied());
    CliArgs::try_parse_from(args).expect("clap accepts the arguments")
}

fn load_with(extra: &[&str]) -> Result<DeviceHostConfig, Vec<ConfigError>> {
    load(&cli(extra)).map_err(|errors| errors.0)
}

/// The file's settings (plus the base command line's, which the file does not set).
fn load_file(text: &str, extra: &[&str]) -> Result<DeviceHostConfig, Vec<ConfigError>> {
    let file = RawSettings::from_file_text(text).map_err(|errors| errors.0)?;
    file.overridden_by(RawSettings::from_cli(&cli(extra)))
        .validate()
        .map_err(|errors| errors.0)
}

fn messages(errors: &[ConfigError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

fn names(config: &DeviceHostConfig) -> Vec<&str> {
    config.regions.iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn named_regions_from_the_command_line() {
    let config = load_with(&[
        "--region",
        "frames:16MiB:guest-ro",
        "--region",
        "audio ring:5000",
        "--region",
        "télémétrie:0x1000:host-ro",
        "--region",
        "ctl:4K:rw",
    ])
    .unwrap();
    assert_eq!(
        names(&config),
        ["frames", "audio ring", "télémétrie", "ctl"]
    );
    let access: Vec<AccessMode> = config.regions.iter().map(|r| r.access).collect();
    assert_eq!(
        access,
        [
            AccessMode::GuestReadOnly,
            AccessMode::ReadWrite,
            AccessMode::HostReadOnly,
            AccessMode::ReadWrite
        ]
    );
    assert_eq!(
        config.requested_region_sizes(),
        [16 << 20, 5000, 4096, 4096]
    );
    assert_eq!(config.region_sizes(), [16 << 20, 8192, 4096, 4096]);

    // What the driver is asked for: this VM, the rounded sizes, the names and modes.
    let request = config.session_request();
    assert_eq!(request.target, VM.parse::<Guid>().unwrap());
    assert_eq!(request.region_sizes, config.region_sizes());
    assert_eq!(request.regions, config.region_identities());
    assert_eq!(request.regions[0].name.as_str(), "frames");
}

#[test]
fn access_modes_mean_who_may_write() {
    let table = [
        ("rw", AccessMode::ReadWrite, true, true),
        ("guest-ro", AccessMode::GuestReadOnly, false, true),
        ("host-ro", AccessMode::HostReadOnly, true, false),
    ];
    for (text, mode, guest, consumer) in table {
        assert_eq!(AccessMode::from_name(text), Some(mode));
        assert_eq!(mode.as_str(), text);
        assert_eq!(mode.to_string(), text);
        assert_eq!(mode.guest_writable(), guest, "{text}");
        assert_eq!(mode.consumer_writable(), consumer, "{text}");
        let own = if guest {
            SectionAccess::ReadWrite
        } else {
            SectionAccess::Read
        };
        assert_eq!(mode.device_host_access(), own, "{text}");
    }
    assert_eq!(AccessMode::default(), AccessMode::ReadWrite);
    assert_eq!(AccessMode::from_name("RW"), None);
    assert_eq!(AccessMode::from_name("ro"), None);
}

#[test]
fn the_shorthand_names_regions_by_index_and_makes_them_rw() {
    let config = load_with(&["--region-size", "64K,5000", "--region-size", "1M"]).unwrap();
    assert_eq!(names(&config), ["region0", "region1", "region2"]);
    assert!(
        config
            .regions
            .iter()
            .all(|r| r.access == AccessMode::ReadWrite)
    );
    assert_eq!(config.region_sizes(), [64 << 10, 8192, 1 << 20]);

    let config = load_file("region_sizes = [4096, \"8K\"]\n", &[]).unwrap();
    assert_eq!(names(&config), ["region0", "region1"]);
}

const NAMED_FILE: &str = r#"
[[region]]
name = "frames"
size = "16MiB"
access = "guest-ro"

[[region]]
name = "audio:left"   # a ':' is fine in the file
size = 5000

[[region]]
name = "télémétrie"
size = 0x1000
access = "host-ro"
"#;

#[test]
fn named_regions_from_the_config_file() {
    let config = load_file(NAMED_FILE, &[]).unwrap();
    assert_eq!(names(&config), ["frames", "audio:left", "télémétrie"]);
    let access: Vec<AccessMode> = config.regions.iter().map(|r| r.access).collect();
    assert_eq!(
        access,
        [
            AccessMode::GuestReadOnly,
            AccessMode::ReadWrite,
            AccessMode::HostReadOnly
        ]
    );
    assert_eq!(config.region_sizes(), [16 << 20, 8192, 4096]);
}

#[test]
fn command_line_regions_replace_the_files_in_the_same_form() {
    let config = load_file(NAMED_FILE, &["--region", "only:4K"]).unwrap();
    assert_eq!(names(&config), ["only"]);
    let config = load_file("region_sizes = [4096, 4096]\n", &["--region-size", "8K"]).unwrap();
    assert_eq!(config.region_sizes(), [8192]);
}

/// One bad `--region` value (besides a good one): exactly one error, on `region`, from the
/// command line, quoting the value and saying what is wrong.
#[test]
fn each_bad_command_line_region_is_one_error_naming_it() {
    let long = format!("{}:4K", "x".repeat(33));
    let long_utf8 = format!("{}:4K", "é".repeat(17));
    let cases: Vec<(String, &str)> = vec![
        ("frames".into(), "no size: write NAME:SIZE[:ACCESS]"),
        ("frames:".into(), "\"\" is not a size"),
        ("frames:12 parsecs".into(), "\"12 parsecs\" is not a size"),
        ("frames:0".into(), "size \"0\" is zero"),
        (
            "frames:4K:ro".into(),
            "access \"ro\" is not one of rw, guest-ro, host-ro",
        ),
        ("frames:4K:RW".into(), "access \"RW\" is not one of"),
        ("frames:4K:rw:x".into(), "access \"rw:x\" is not one of"),
        (":4K".into(), "name \"\" is empty"),
        (long, "is 33 bytes long; a region name has at most 32 bytes"),
        (long_utf8, "is 34 bytes long"),
        ("a\tb:4K".into(), "has an ASCII control character at byte 1"),
        (
            "a\u{7f}:4K".into(),
            "has an ASCII control character at byte 1",
        ),
        ("a\0b:4K".into(), "has a NUL character at byte 1"),
    ];
    for (spec, text) in &cases {
        let found = load_with(&["--region", "good:4K", "--region", spec]).unwrap_err();
        assert_eq!(found.len(), 1, "{spec:?}: {:#?}", messages(&found));
        assert_eq!(found[0].field, Field::Regions);
        assert_eq!(found[0].source, Source::CommandLine);
        let message = found[0].to_string();
        assert!(
            message.starts_with(&format!("region (from --region): region 1 ({spec:?}): ")),
            "{message}"
        );
        assert!(message.contains(text), "{spec:?}: {message}");
    }
}

#[test]
fn a_name_of_exactly_32_bytes_is_fine() {
    let ascii = format!("{}:4K", "x".repeat(32));
    let utf8 = format!("{}:4K", "é".repeat(16));
    let config = load_with(&["--region", &ascii, "--region", &utf8]).unwrap();
    assert_eq!(config.regions[0].name.as_str().len(), 32);
    assert_eq!(config.regions[1].name.as_str(), "é".repeat(16));
}

#[test]
fn duplicate_names_are_refused_bytewise() {
    let found = load_with(&[
        "--region", "a:4K", "--region", "b:4K", "--region", "a:8K", "--region", "A:4K",
    ])
    .unwrap_err();
    assert_eq!(found.len(), 1, "{:#?}", messages(&found));
    assert_eq!(
        found[0].to_string(),
        "region (from --region): region 2 (\"a:8K\"): name \"a\" is already the name of region \
         0; names are unique per VM"
    );
    // Case and Unicode normalisation make different names (compared bytewise, like the
    // driver): "é" precomposed and decomposed are two names.
    let config = load_with(&["--region", "\u{e9}:4K", "--region", "e\u{301}:4K"]).unwrap();
    assert_eq!(config.regions.len(), 2);
}

#[test]
fn the_count_and_the_bar_limit_are_checked() {
    let many: Vec<String> = (0..17).map(|i| format!("r{i}:4K")).collect();
    let mut args = Vec::new();
    for spec in &many {
        args.extend(["--region", spec.as_str()]);
    }
    let found = load_with(&args).unwrap_err();
    assert_eq!(found.len(), 1);
    assert!(
        found[0].to_string().contains("17 regions; at most 16"),
        "{}",
        found[0]
    );
    let found = load_with(&["--region", "big:32G", "--region", "small:4K"]).unwrap_err();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].field, Field::Regions);
    assert!(found[0].to_string().contains("do not fit one BAR"));

    let found = load_file("region = []\n", &[]).unwrap_err();
    assert_eq!(
        messages(&found),
        ["region (from the config file): at least one region is needed"]
    );
}

#[test]
fn every_bad_region_is_reported_together_with_the_other_problems() {
    let found = load_with(&[
        "--region",
        "ok:4K",
        "--region",
        "bad:0:xx",
        "--region",
        "ok:8K",
        "--bar-index",
        "3",
    ])
    .unwrap_err();
    let all = messages(&found);
    assert_eq!(found.len(), 4, "{all:#?}");
    assert!(all[0].contains("region 1 (\"bad:0:xx\"): size \"0\" is zero"));
    assert!(all[1].contains("region 1 (\"bad:0:xx\"): access \"xx\" is not one of"));
    assert!(all[2].contains("region 2 (\"ok:8K\"): name \"ok\" is already the name of region 0"));
    assert_eq!(found[3].field, Field::BarIndex);
}

#[test]
fn bad_names_in_the_file_are_each_reported() {
    let text = r#"
[[region]]
name = "this name is far too long for a region"
size = 4096

[[region]]
name = "bell\u0007"
size = 4096

[[region]]
name = "nul\u0000inside"
size = 4096

[[region]]
name = ""
size = 4096

[[region]]
name = "tab	inside"
size = 4096

[[region]]
name = "fine"
size = 4096
"#;
    let found = load_file(text, &[]).unwrap_err();
    let all = messages(&found);
    assert_eq!(
        all,
        [
            "region (from the config file): region 0: name \"this name is far too long for a \
             region\" is 38 bytes long; a region name has at most 32 bytes of UTF-8",
            "region (from the config file): region 1: name \"bell\\u{7}\" has an ASCII control \
             character at byte 4",
            "region (from the config file): region 2: name \"nul\\0inside\" has a NUL character \
             at byte 3",
            "region (from the config file): region 3: name \"\" is empty; every region needs a \
             name",
            "region (from the config file): region 4: name \"tab\\tinside\" has an ASCII \
             control character at byte 3",
        ]
    );
}

#[test]
fn wrong_types_unknown_keys_and_missing_keys_in_region_tables() {
    let text = r#"
[[region]]
name = 7
size = 4096

[[region]]
name = "b"
size = true
access = 1

[[region]]
name = "c"
sise = 4096

[[region]]
size = 4096
"#;
    let found = load_file(text, &[]).unwrap_err();
    let all = messages(&found);
    assert_eq!(
        all,
        [
            // While reading the file: types and keys.
            "region (from the config file): region 0: name: expected a string, found integer",
            "region (from the config file): region 1: access: expected a string, found integer",
            "region (from the config file): region 1: size: expected a size (string or \
             integer), found boolean",
            "region (from the config file): region 2: unknown key \"sise\"; known keys: name, \
             size, access",
            // While validating: what is missing (a key of the wrong type is not also missing).
            "region (from the config file): region 2: no size",
            "region (from the config file): region 3: no name (every region needs one)",
        ]
    );
    assert!(found.iter().all(|e| e.field == Field::Regions));
}

#[test]
fn a_region_key_of_the_wrong_shape_is_reported() {
    let found = load_file("region = 5\n", &[]).unwrap_err();
    assert_eq!(found.len(), 1, "{:#?}", messages(&found));
    assert_eq!(
        found[0].problem,
        Problem::WrongType {
            expected: "an array of tables ([[region]] with name, size, access)",
            found: "integer"
        }
    );
    let found = load_file("region = [\"frames:4K\"]\n", &[]).unwrap_err();
    assert_eq!(
        messages(&found),
        [
            "region (from the config file): region 0: expected a table (name, size, access), \
             found string"
        ]
    );
}

#[test]
fn a_file_that_is_not_utf8_is_refused_naming_it() {
    let path = std::env::temp_dir().join(format!(
        "vmbmmio-devhost-regions-{}.toml",
        std::process::id()
    ));
    std::fs::write(&path, b"[[region]]\nname = \"fr\xffmes\"\nsize = 4096\n").unwrap();
    let args = ["--config", path.to_str().unwrap()];
    let found = load_with(&args).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].field, Field::ConfigFile);
    let message = found[0].to_string();
    assert!(message.contains("cannot read"), "{message}");
    assert!(message.contains("UTF-8"), "{message}");
}

#[test]
fn mixing_both_forms_is_refused_wherever_they_come_from() {
    let both = "both forms of the regions are given";
    // Both on the command line.
    let found = load_with(&["--region", "a:4K", "--region-size", "4K"]).unwrap_err();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].to_string(),
        "region (from --region): both forms of the regions are given: --region and \
         --region-size; use either named regions (--region NAME:SIZE[:ACCESS] / [[region]] \
         tables) or the sizes shorthand (--region-size / region_sizes), not both"
    );
    // Both in the file.
    let text = format!("region_sizes = [4096]\n{NAMED_FILE}");
    let found = load_file(&text, &[]).unwrap_err();
    assert_eq!(found.len(), 1);
    assert!(found[0].to_string().contains(both));
    assert!(
        found[0]
            .to_string()
            .contains("region in the config file and region_sizes in the config file")
    );
    // One in each: the command line does not silently drop the file's names (or sizes).
    let found = load_file(NAMED_FILE, &["--region-size", "4K"]).unwrap_err();
    assert_eq!(found.len(), 1);
    assert!(
        found[0]
            .to_string()
            .contains("region in the config file and --region-size"),
        "{}",
        found[0]
    );
    let found = load_file("region_sizes = [4096]\n", &["--region", "a:4K"]).unwrap_err();
    assert_eq!(found.len(), 1);
    assert!(
        found[0]
            .to_string()
            .contains("--region and region_sizes in the config file"),
        "{}",
        found[0]
    );
}

#[test]
fn no_regions_at_all_is_one_missing_error_naming_both_forms() {
    let found = load_with(&[]).unwrap_err();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].field, Field::Regions);
    assert_eq!(found[0].problem, Problem::Missing);
    assert_eq!(
        found[0].to_string(),
        "region: required (pass --region NAME:SIZE[:ACCESS] or set [[region]] tables in the \
         config file (or the sizes shorthand --region-size / region_sizes))"
    );
}
