//! Texts as `texts` holds them (format 7; against a dictionary since format 8): compressed,
//! behind a byte that says how. Objects' and inbox items' texts were four fifths of what the
//! store held, and iCalendar text (its VTIMEZONEs, its attendee lines) compresses to half with
//! LZ4: sled writes, caches and cleans half as many bytes for them, which intake gains more
//! from than compressing costs it (BENCHMARKS.md, "Texts compressed"). A text's first lines,
//! its VTIMEZONEs and its property names are what every calendar text repeats and what a
//! small one has no earlier copy of to point at: LZ4 finds them in a dictionary of such text
//! instead (`texts.dict`).

use super::MAX_VALUE;

/// How a value of `texts` is written: its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Packing {
    /// LZ4 block, its text's length before it (4 bytes, little-endian).
    Lz4 = 1,
    /// The same, compressed against `DICTIONARY`.
    Lz4Dictionary = 2,
}

impl Packing {
    fn of(byte: u8) -> Option<Packing> {
        match byte {
            1 => Some(Packing::Lz4),
            2 => Some(Packing::Lz4Dictionary),
            _ => None,
        }
    }
}

/// What `Packing::Lz4Dictionary` compresses against: iCalendar's common lines, the
/// VTIMEZONEs of a few zones as calendar programs write them, the PRODIDs of the common ones.
/// Texts stored with it are read with it: it never changes (a test holds its digest); a
/// better one would be a packing of its own.
const DICTIONARY: &[u8] = include_bytes!("texts.dict");

/// A text packed for `texts`.
pub(super) fn pack(text: &[u8]) -> Vec<u8> {
    // Compressed in place behind the byte and the length: one buffer, no copy.
    let mut value = vec![0; HEADER + lz4_flex::block::get_maximum_output_size(text.len())];
    value[0] = Packing::Lz4Dictionary as u8;
    value[1..HEADER].copy_from_slice(&(text.len() as u32).to_le_bytes());
    let written = lz4_flex::block::compress_into_with_dict(text, &mut value[HEADER..], DICTIONARY)
        .expect("the buffer holds the worst case");
    value.truncate(HEADER + written);
    value
}

/// The packing's byte and the text's length.
const HEADER: usize = 5;

/// Why a value of `texts` is not a packed text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum Unpacking {
    #[error("a text of an unknown packing ({0})")]
    Unknown(u8),
    #[error("an empty value where a text was expected")]
    Empty,
    #[error("a text says it is {0} bytes long, over what a commit carries")]
    TooLong(usize),
    #[error("a text that does not decompress: {0}")]
    Corrupt(String),
}

/// The text a value of `texts` holds.
pub(super) fn unpack(value: &[u8]) -> Result<Vec<u8>, Unpacking> {
    let (&byte, rest) = value.split_first().ok_or(Unpacking::Empty)?;
    let packing = Packing::of(byte).ok_or(Unpacking::Unknown(byte))?;
    let length = rest
        .first_chunk::<4>()
        .map(|n| u32::from_le_bytes(*n) as usize)
        .ok_or_else(|| Unpacking::Corrupt("no length".into()))?;
    // The length is read before anything is allocated for it: a damaged value must not ask
    // for gigabytes.
    if length > MAX_VALUE {
        return Err(Unpacking::TooLong(length));
    }
    let compressed = &rest[4..];
    match packing {
        Packing::Lz4 => lz4_flex::block::decompress(compressed, length),
        Packing::Lz4Dictionary => {
            lz4_flex::block::decompress_with_dict(compressed, length, DICTIONARY)
        }
    }
    .map_err(|e| Unpacking::Corrupt(e.to_string()))
}

/// A text packed by format 7 (LZ4 alone) packed again against the dictionary; any other
/// value, one that does not unpack included, as it is. `imipd compact` copies texts through
/// it: an older store gains there what format 8 packs smaller.
pub(super) fn repacked(value: sled::IVec) -> sled::IVec {
    if value.first() != Some(&(Packing::Lz4 as u8)) {
        return value;
    }
    match unpack(&value) {
        Ok(text) => pack(&text).into(),
        Err(_) => value,
    }
}

/// A text as format 7 packed it, for tests of what meets it.
#[cfg(test)]
pub(super) fn packed_as_format_7(text: &[u8]) -> Vec<u8> {
    let mut value = vec![Packing::Lz4 as u8];
    value.extend_from_slice(&lz4_flex::block::compress_prepend_size(text));
    value
}

/// Whether a value was packed against the dictionary.
#[cfg(test)]
pub(super) fn against_the_dictionary(value: &[u8]) -> bool {
    value.first() == Some(&(Packing::Lz4Dictionary as u8))
}

/// Whether a value of `texts` is packed already: an upgrade cut short meets values of both
/// kinds. An unpacked text is iCalendar, which begins with a letter, never with byte 1 or 2.
pub(super) fn is_packed(value: &[u8]) -> bool {
    value.first().copied().and_then(Packing::of).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:a\r\n\
        ATTENDEE;CN=Bob:mailto:bob@example.com\r\nATTENDEE;CN=Carol:mailto:carol@example.com\r\n\
        ATTENDEE;CN=Dan:mailto:dan@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

    #[test]
    fn a_text_comes_back_as_it_went_and_smaller() {
        let value = pack(TEXT.as_bytes());
        assert!(value.len() < TEXT.len(), "{} bytes", value.len());
        assert!(is_packed(&value));
        assert!(!is_packed(TEXT.as_bytes()));
        assert_eq!(unpack(&value).unwrap(), TEXT.as_bytes());
        assert_eq!(unpack(&pack(b"")).unwrap(), b"");
    }

    #[test]
    fn texts_packed_before_the_dictionary_still_read() {
        let value = packed_as_format_7(TEXT.as_bytes());
        assert!(is_packed(&value));
        assert_eq!(unpack(&value).unwrap(), TEXT.as_bytes());
    }

    #[test]
    fn a_text_of_format_7_is_repacked_and_nothing_else_changes() {
        let old = packed_as_format_7(TEXT.as_bytes());
        let again = repacked(old.clone().into());
        assert!(against_the_dictionary(&again));
        assert!(again.len() < old.len());
        assert_eq!(unpack(&again).unwrap(), TEXT.as_bytes());
        let current = pack(TEXT.as_bytes());
        assert_eq!(repacked(current.clone().into()).as_ref(), &current[..]);
        let damaged = &old[..old.len() - 3];
        assert_eq!(repacked(damaged.into()).as_ref(), damaged);
    }

    #[test]
    fn the_dictionary_is_the_one_stored_texts_were_packed_with() {
        use blake2::{Blake2s256, Digest};
        let digest = Blake2s256::digest(DICTIONARY);
        assert_eq!(
            format!("{digest:x}"),
            "9f95c6e549be09385c52c6fd81a069a173edf9ef2c1b1f4b15ac24ecd1e0c025",
            "texts.dict changed: texts stored with it would no longer read; add a packing"
        );
    }

    #[test]
    fn a_small_text_packs_smaller_against_the_dictionary() {
        let plain = lz4_flex::block::compress(TEXT.as_bytes()).len();
        let packed = pack(TEXT.as_bytes()).len() - HEADER;
        assert!(packed * 10 < plain * 8, "{packed} bytes against {plain}");
    }

    #[test]
    fn a_damaged_value_is_an_error_not_a_text_or_an_allocation() {
        assert_eq!(unpack(b""), Err(Unpacking::Empty));
        assert_eq!(unpack(TEXT.as_bytes()), Err(Unpacking::Unknown(b'B')));
        let mut long = pack(TEXT.as_bytes());
        long[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(unpack(&long), Err(Unpacking::TooLong(u32::MAX as usize)));
        let cut = pack(TEXT.as_bytes());
        assert!(matches!(
            unpack(&cut[..cut.len() - 3]),
            Err(Unpacking::Corrupt(_))
        ));
        assert!(matches!(unpack(&[1, 0]), Err(Unpacking::Corrupt(_))));
    }
}
