//! Texts as `texts` holds them (format 7): compressed, behind a byte that says how. Objects'
//! and inbox items' texts were four fifths of what the store held, and iCalendar text (its
//! VTIMEZONEs, its attendee lines) compresses to half with LZ4: sled writes, caches and cleans
//! half as many bytes for them, which intake gains more from than compressing costs it
//! (BENCHMARKS.md, "Texts compressed").

use super::MAX_VALUE;

/// How a value of `texts` is written: its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Packing {
    /// LZ4 block, its text's length before it (4 bytes, little-endian).
    Lz4 = 1,
}

/// A text packed for `texts`.
pub(super) fn pack(text: &[u8]) -> Vec<u8> {
    // Compressed in place behind the byte and the length: one buffer, no copy.
    let mut value = vec![0; HEADER + lz4_flex::block::get_maximum_output_size(text.len())];
    value[0] = Packing::Lz4 as u8;
    value[1..HEADER].copy_from_slice(&(text.len() as u32).to_le_bytes());
    let written = lz4_flex::block::compress_into(text, &mut value[HEADER..])
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
    let (&packing, rest) = value.split_first().ok_or(Unpacking::Empty)?;
    if packing != Packing::Lz4 as u8 {
        return Err(Unpacking::Unknown(packing));
    }
    let length = rest
        .first_chunk::<4>()
        .map(|n| u32::from_le_bytes(*n) as usize)
        .ok_or_else(|| Unpacking::Corrupt("no length".into()))?;
    // The length is read before anything is allocated for it: a damaged value must not ask
    // for gigabytes.
    if length > MAX_VALUE {
        return Err(Unpacking::TooLong(length));
    }
    lz4_flex::block::decompress(&rest[4..], length).map_err(|e| Unpacking::Corrupt(e.to_string()))
}

/// Whether a value of `texts` is packed already: an upgrade cut short meets values of both
/// kinds. An unpacked text is iCalendar, which begins with a letter, never with byte 1.
pub(super) fn is_packed(value: &[u8]) -> bool {
    value.first() == Some(&(Packing::Lz4 as u8))
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
