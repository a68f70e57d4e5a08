//! Keeps `docs/protocol.md` and the code from drifting: the document's tables are read at test
//! time and checked against the structs (sizes, offsets with `offset_of!`), the kinds, the
//! error codes, the event kinds and the limits.
//!
//! The document is the contract a guest-driver author reads; the structs are what the driver
//! runs. If this test fails, one of them changed without the other.

use std::collections::BTreeMap;

use vmbmmio_proto::guest::*;
use zerocopy::FromZeros;

const DOC: &str = include_str!("../../../docs/protocol.md");

/// Whether the document's prose, with line breaks and indentation folded to single spaces,
/// contains `text`.
fn says(text: &str) -> bool {
    let flat = DOC.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.contains(text)
}

/// One table of the document: its heading and its body rows (cells trimmed).
struct Table {
    heading: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner
        .split('|')
        .map(|cell| cell.trim().to_string())
        .collect()
}

/// Every table of the document, with the nearest heading (`##` or `###`) above it.
fn tables() -> Vec<Table> {
    let mut tables = Vec::new();
    let mut heading = String::new();
    let mut current: Option<Table> = None;
    for line in DOC.lines() {
        let is_row = line.trim_start().starts_with('|');
        if !is_row && let Some(table) = current.take() {
            tables.push(table);
        }
        if let Some(text) = line.strip_prefix("### ").or(line.strip_prefix("## ")) {
            heading = text.trim().to_string();
        } else if is_row {
            let row = cells(line);
            match &mut current {
                None => {
                    current = Some(Table {
                        heading: heading.clone(),
                        header: row,
                        rows: Vec::new(),
                    })
                }
                Some(table) if row.iter().all(|c| c.chars().all(|ch| ch == '-')) => {
                    let _ = table;
                }
                Some(table) => table.rows.push(row),
            }
        }
    }
    if let Some(table) = current.take() {
        tables.push(table);
    }
    tables
}

/// The first `` `word` `` of a cell.
fn ticked(cell: &str) -> &str {
    let start = cell.find('`').expect("a backticked name") + 1;
    let end = cell[start..].find('`').expect("a closing backtick") + start;
    &cell[start..end]
}

/// A number cell: decimal, or a product like `64 × 16`.
fn number(cell: &str) -> usize {
    cell.split('×')
        .map(|part| part.trim().parse::<usize>().expect("a number"))
        .product()
}

/// The `(offset, size, name)` rows of a field table.
fn field_rows(table: &Table) -> Vec<Field> {
    assert_eq!(
        &table.header[..3],
        ["Offset", "Size", "Field"],
        "{}",
        table.heading
    );
    table
        .rows
        .iter()
        .map(|row| {
            (
                number(&row[0]),
                number(&row[1]),
                ticked(&row[2]).to_string(),
            )
        })
        .collect()
}

/// `(offset, size, doc name)` of the listed fields of `$t`, from `offset_of!` and the field's
/// own size.
macro_rules! fields {
    ($t:ty; $($field:ident => $name:literal),* $(,)?) => {{
        let zero = <$t>::new_zeroed();
        vec![$((
            core::mem::offset_of!($t, $field),
            core::mem::size_of_val(&zero.$field),
            $name.to_string(),
        )),*]
    }};
}

/// The struct and fields of every message with a field table, by the document's name.
/// `(offset, size, name)` of one field.
type Field = (usize, usize, String);

fn struct_fields() -> BTreeMap<&'static str, (usize, Vec<Field>)> {
    let mut map = BTreeMap::new();
    map.insert(
        "SELECT_VERSION",
        (
            size_of::<SelectVersionRequest>(),
            fields!(SelectVersionRequest; version => "version", reserved => "reserved"),
        ),
    );
    map.insert(
        "REPORT_RESERVATION",
        (
            size_of::<ReportReservationRequest>(),
            fields!(ReportReservationRequest;
                flags => "flags", reserved => "reserved", base => "base", size => "size"),
        ),
    );
    map.insert(
        "REPORT_DEVICE",
        (
            size_of::<ReportDeviceRequest>(),
            fields!(ReportDeviceRequest;
                instance => "instance", segment => "segment", bus => "bus", devfn => "devfn",
                bar_index => "bar_index", flags => "flags", reserved => "reserved",
                bar_base => "bar_base", bar_size => "bar_size"),
        ),
    );
    map.insert(
        "WAIT_EVENT",
        (
            size_of::<WaitEventRequest>(),
            fields!(WaitEventRequest; last_seen => "last_seen"),
        ),
    );
    map.insert(
        "DOORBELL",
        (
            size_of::<DoorbellRequest>(),
            fields!(DoorbellRequest; region => "region", reserved => "reserved", value => "value"),
        ),
    );
    map.insert(
        "HELLO_REPLY",
        (
            size_of::<HelloReply>(),
            fields!(HelloReply;
                min_version => "min_version", max_version => "max_version",
                max_packet_size => "max_packet_size", max_regions => "max_regions",
                error_limit => "error_limit", reserved0 => "reserved", reserved1 => "reserved"),
        ),
    );
    map.insert(
        "ACK",
        (
            size_of::<AckReply>(),
            fields!(AckReply;
                acked_kind => "acked_kind", reserved0 => "reserved", reserved1 => "reserved",
                generation => "generation"),
        ),
    );
    map.insert(
        "LAYOUT",
        (
            size_of::<LayoutReply>(),
            fields!(LayoutReply;
                generation => "generation", bar_size => "bar_size",
                region_count => "region_count", reserved => "reserved", regions => "regions"),
        ),
    );
    map.insert(
        "EVENT",
        (
            size_of::<EventReply>(),
            fields!(EventReply;
                sequence => "sequence", event => "event", region => "region",
                generation => "generation", value => "value"),
        ),
    );
    map.insert(
        "ERROR",
        (
            size_of::<ErrorReply>(),
            fields!(ErrorReply;
                code => "code", request_kind => "request_kind", reserved0 => "reserved",
                errors_left => "errors_left", reserved1 => "reserved"),
        ),
    );
    map
}

/// `NAME` and `N` of a heading like `` `NAME` (N bytes) ``.
fn message_heading(heading: &str) -> Option<(&str, usize)> {
    let name = heading.strip_prefix('`')?.split('`').next()?;
    let size = heading.split('(').nth(1)?.strip_suffix(" bytes)")?;
    Some((name, size.parse().ok()?))
}

fn kind_named(name: &str) -> Kind {
    *Kind::ALL
        .iter()
        .find(|kind| kind.name() == name)
        .unwrap_or_else(|| panic!("no kind named {name}"))
}

#[test]
fn the_header_table_matches_the_header_struct() {
    let table = tables()
        .into_iter()
        .find(|t| t.heading == "Message header")
        .expect("the header table");
    let expected = fields!(Header;
        kind => "kind", flags => "flags", size => "size", request_id => "request_id");
    assert_eq!(field_rows(&table), expected);
    assert_eq!(size_of::<Header>(), HEADER_SIZE);
    assert!(says(&format!(
        "Every message starts with the same {HEADER_SIZE} bytes"
    )));
}

#[test]
fn the_kinds_table_matches_the_kinds() {
    let table = tables()
        .into_iter()
        .find(|t| t.heading == "Kinds")
        .expect("the kinds table");
    assert_eq!(&table.header[..4], ["Kind", "Name", "Direction", "Size"]);
    let mut seen = Vec::new();
    for row in &table.rows {
        let value = u16::from_str_radix(ticked(&row[0]).trim_start_matches("0x"), 16).unwrap();
        let kind = Kind::from_u16(value).unwrap_or_else(|| panic!("kind {value:#x}"));
        assert_eq!(kind.name(), ticked(&row[1]));
        assert_eq!(kind.size(), number(&row[3]), "{}", kind.name());
        let direction = if kind.is_reply() {
            "host → guest"
        } else {
            "guest → host"
        };
        assert_eq!(row[2], direction, "{}", kind.name());
        if let Some(reply) = kind.reply_kind() {
            assert!(row[4].contains(&format!("`{}`", reply.name())), "{row:?}");
        }
        // The kinds of 1.1 say so.
        assert_eq!(
            row[4].contains("version 1.1"),
            kind.since() == PROTOCOL_VERSION_1_1,
            "{row:?}"
        );
        seen.push(kind);
    }
    assert_eq!(seen, Kind::ALL);
}

#[test]
fn every_message_heading_states_its_kinds_size() {
    let mut headed = Vec::new();
    for line in DOC.lines() {
        if let Some((name, size)) = line.strip_prefix("### ").and_then(message_heading) {
            let kind = kind_named(name);
            assert_eq!(kind.size(), size, "{name}");
            headed.push(kind);
        }
    }
    headed.sort_by_key(|kind| kind.to_u16());
    let mut all = Kind::ALL.to_vec();
    all.sort_by_key(|kind| kind.to_u16());
    assert_eq!(headed, all, "every kind has its own section");
}

#[test]
fn every_field_table_matches_its_struct() {
    let structs = struct_fields();
    let mut checked: Vec<String> = Vec::new();
    for table in tables() {
        let Some((name, size)) = message_heading(&table.heading) else {
            continue;
        };
        if table.header.first().map(String::as_str) != Some("Offset") {
            continue;
        }
        let rows = field_rows(&table);
        if rows.first().is_some_and(|row| row.0 == 0) {
            // The region entry's table, under LAYOUT; checked on its own.
            continue;
        }
        let (struct_size, fields) = structs
            .get(name)
            .unwrap_or_else(|| panic!("no struct for {name}'s table"));
        assert_eq!(*struct_size, size, "{name}");
        assert_eq!(&rows, fields, "{name}");
        // The table covers the body exactly: contiguous from the header to the end.
        let mut at = HEADER_SIZE;
        for (offset, field_size, field) in &rows {
            assert_eq!(*offset, at, "{name}.{field}");
            at += field_size;
        }
        assert_eq!(at, size, "{name}");
        checked.push(name.to_string());
    }
    checked.sort_unstable();
    let mut expected: Vec<String> = structs.keys().map(|name| name.to_string()).collect();
    expected.sort_unstable();
    assert_eq!(checked, expected, "every struct has a table");
    // The messages without a table are the header alone.
    for kind in [Kind::Hello, Kind::Ready, Kind::Releasing, Kind::GetLayout] {
        assert_eq!(kind.size(), HEADER_SIZE);
    }
}

#[test]
fn the_region_entry_table_matches_the_wire_region() {
    let table = tables()
        .into_iter()
        .find(|t| t.heading.starts_with("`LAYOUT`") && t.rows.first().is_some_and(|r| r[0] == "0"))
        .expect("the region entry table");
    let expected = fields!(WireRegion;
        id => "id", access => "access", state => "state", reserved0 => "reserved",
        offset_pages => "offset_pages", length_pages => "length_pages", name => "name",
        reserved1 => "reserved");
    assert_eq!(field_rows(&table), expected);
    assert!(says(&format!(
        "Each region entry ({REGION_ENTRY_SIZE} bytes)"
    )));
    // The values the access and state cells list.
    let access = &table.rows[1][2];
    assert!(access.contains(&format!("{} read-only", RegionAccess::ReadOnly.to_u8())));
    assert!(access.contains(&format!("{} read/write", RegionAccess::ReadWrite.to_u8())));
    let state = &table.rows[2][2];
    assert!(state.contains(&format!("{} unmapped", RegionState::Unmapped.to_u8())));
    assert!(state.contains(&format!("{} mapped", RegionState::Mapped.to_u8())));
    assert!(state.contains(&format!("{} served", RegionState::Intercepted.to_u8())));
}

#[test]
fn the_event_kinds_match() {
    let table = tables()
        .into_iter()
        .find(|t| t.heading.starts_with("`EVENT`"))
        .expect("the EVENT table");
    let cell = &table
        .rows
        .iter()
        .find(|row| ticked(&row[2]) == "event")
        .expect("the event row")[2];
    // "`event`: 1 `LAYOUT_CHANGED`, 2 `REGIONS_MAPPED`, ..."
    let list = cell.split_once(':').expect("a list").1;
    let listed: Vec<(u32, String)> = list
        .split(',')
        .map(|item| {
            let (value, name) = item.trim().split_once(' ').expect("value and name");
            (value.parse().unwrap(), name.trim_matches('`').to_string())
        })
        .collect();
    let expected: Vec<(u32, String)> = EventKind::ALL
        .iter()
        .map(|event| (event.to_u32(), event.name().to_string()))
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn the_error_code_table_matches_the_codes() {
    let table = tables()
        .into_iter()
        .find(|t| t.header.first().map(String::as_str) == Some("Code"))
        .expect("the error code table");
    assert_eq!(&table.header[..2], ["Code", "Name"]);
    let listed: Vec<(u32, String)> = table
        .rows
        .iter()
        .map(|row| (row[0].parse().unwrap(), ticked(&row[1]).to_string()))
        .collect();
    let expected: Vec<(u32, String)> = ErrorCode::ALL
        .iter()
        .map(|code| (code.to_u32(), code.name().to_string()))
        .collect();
    assert_eq!(listed, expected);
    // Which codes are not counted.
    let uncounted: Vec<_> = ErrorCode::ALL
        .iter()
        .filter(|code| !code.counted())
        .map(|code| format!("`{}`", code.name()))
        .collect();
    assert_eq!(uncounted, ["`BUSY`", "`CHANNEL_CLOSING`", "`RATE_LIMITED`"]);
    assert!(says(
        "`BUSY`, `CHANNEL_CLOSING` and `RATE_LIMITED` are not counted as misbehaviour"
    ));
    // The codes of 1.1 say so in their row.
    for row in &table.rows {
        let code = ErrorCode::from_u32(row[0].parse().unwrap()).unwrap();
        assert_eq!(
            row[2].starts_with("(1.1)"),
            code.since() == PROTOCOL_VERSION_1_1,
            "{row:?}"
        );
    }
}

#[test]
fn the_limits_match() {
    assert!(says(&format!(
        "The largest message is {LARGEST_MESSAGE} bytes; the channel's maximum packet size is \
         {MAX_PACKET_SIZE}."
    )));
    assert!(says(&format!("`max_packet_size` ({MAX_PACKET_SIZE})")));
    assert!(says(&format!("`max_regions` ({MAX_REGIONS})")));
    assert!(says(&format!(
        "`error_limit` (the misbehaviour threshold, {ERROR_LIMIT})"
    )));
    assert!(says(&format!(
        "which starts at **{ERROR_LIMIT}** per channel open"
    )));
    assert!(says(&format!("the queue holds {EVENT_QUEUE} events")));
    assert!(says("`regions`; entries at and after `region_count`"));
    assert!(says(&format!("`region_count` (0–{MAX_REGIONS})")));
    assert!(says(&format!(
        "`0x{:04X}_{:04X}` = 1.0",
        PROTOCOL_VERSION_1_0 >> 16,
        PROTOCOL_VERSION_1_0 & 0xFFFF
    )));
    assert_eq!(HostInfo::V1.max_packet_size, MAX_PACKET_SIZE);
    assert_eq!(HostInfo::V1.error_limit, ERROR_LIMIT);
    assert_eq!(HostInfo::V1.max_regions as usize, MAX_REGIONS);
    assert_eq!(
        (HostInfo::V1.min_version, HostInfo::V1.max_version),
        (PROTOCOL_VERSION_1_0, PROTOCOL_VERSION_1_0),
        "a host without doorbells states 1.0 only"
    );
    assert_eq!(
        (HostInfo::V1_1.min_version, HostInfo::V1_1.max_version),
        (PROTOCOL_VERSION_1_0, PROTOCOL_VERSION_1_1),
    );
    assert_eq!(HOST_MAX_VERSION, PROTOCOL_VERSION_1_1);
    assert_eq!(
        CLIENT_VERSIONS,
        [PROTOCOL_VERSION_1_0, PROTOCOL_VERSION_1_1]
    );
    assert!(says(&format!(
        "`0x{:04X}_{:04X}` = 1.1",
        PROTOCOL_VERSION_1_1 >> 16,
        PROTOCOL_VERSION_1_1 & 0xFFFF
    )));
    assert!(says("The host implements 1.0 and 1.1"));
    assert_eq!(HostInfo::V1_1.max_packet_size, MAX_PACKET_SIZE);
    // The name field's width.
    let table = tables()
        .into_iter()
        .find(|t| t.heading.starts_with("`LAYOUT`") && t.rows.first().is_some_and(|r| r[0] == "0"))
        .unwrap();
    let name = table
        .rows
        .iter()
        .find(|row| ticked(&row[2]) == "name")
        .unwrap();
    assert_eq!(number(&name[1]), REGION_NAME_LEN);
}
