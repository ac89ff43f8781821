//! Reading PostgreSQL's binary `COPY` format: a streaming [`Decoder`] for
//! `COPY ... TO STDOUT (FORMAT binary)`. Writing is [`pgconn::copy`]'s
//! [`Encoder`], the one the library's chunk loader uses; fields read from
//! the source pass through it unchanged ([`Encoder::raw`]): texts,
//! embeddings and PDFs are copied byte for byte.

use chrono::{DateTime, Utc};
pub use pgconn::copy::{Encoder, HEADER, SEND_BYTES};
use uuid::Uuid;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Why a `COPY` stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed binary COPY data: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// One row: every field's byte range in [`Decoder`]'s buffer, `None` for
/// NULL. Read the bytes with [`Decoder::field`].
pub type RowFields = Vec<Option<std::ops::Range<usize>>>;

/// Reads rows from binary `COPY` data that arrives in pieces.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    pos: usize,
    header_read: bool,
    finished: bool,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a piece of the stream. Bytes of rows already returned are
    /// dropped first, so the buffer holds about one piece.
    pub fn push(&mut self, piece: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(piece);
    }

    /// The next complete row, `Ok(None)` when more data is needed or the
    /// trailer was read ([`Decoder::finished`]).
    ///
    /// # Errors
    /// [`DecodeError`] for a wrong header or a negative length other than -1.
    pub fn next_row(&mut self) -> Result<Option<RowFields>, DecodeError> {
        if self.finished {
            return Ok(None);
        }
        if !self.header_read {
            if self.buf.len() - self.pos < HEADER.len() {
                return Ok(None);
            }
            if &self.buf[self.pos..self.pos + 11] != b"PGCOPY\n\xff\r\n\0" {
                return Err(DecodeError("wrong signature".into()));
            }
            let ext = i32::from_be_bytes(read4(&self.buf, self.pos + 15));
            let skip = HEADER.len() + usize::try_from(ext.max(0)).unwrap_or(0);
            if self.buf.len() - self.pos < skip {
                return Ok(None);
            }
            self.pos += skip;
            self.header_read = true;
        }
        let start = self.pos;
        let avail = self.buf.len();
        if avail - start < 2 {
            return Ok(None);
        }
        let count = i16::from_be_bytes([self.buf[start], self.buf[start + 1]]);
        if count == -1 {
            self.pos = start + 2;
            self.finished = true;
            return Ok(None);
        }
        let count = usize::try_from(count).map_err(|_| DecodeError("field count".into()))?;
        let mut at = start + 2;
        let mut fields = Vec::with_capacity(count);
        for _ in 0..count {
            if avail - at < 4 {
                return Ok(None);
            }
            let len = i32::from_be_bytes(read4(&self.buf, at));
            at += 4;
            if len == -1 {
                fields.push(None);
                continue;
            }
            let len = usize::try_from(len).map_err(|_| DecodeError("field length".into()))?;
            if avail - at < len {
                return Ok(None);
            }
            fields.push(Some(at..at + len));
            at += len;
        }
        self.pos = at;
        Ok(Some(fields))
    }

    /// The bytes of a field of the row last returned.
    pub fn field(&self, range: &Option<std::ops::Range<usize>>) -> Option<&[u8]> {
        range.as_ref().map(|r| &self.buf[r.clone()])
    }

    /// Whether the trailer was read.
    pub fn finished(&self) -> bool {
        self.finished
    }
}

fn read4(buf: &[u8], at: usize) -> [u8; 4] {
    [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
}

/// Decodes a binary `integer`.
pub fn int4(bytes: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(bytes.try_into().ok()?))
}

/// Decodes a binary `uuid`.
pub fn uuid(bytes: &[u8]) -> Option<Uuid> {
    Uuid::from_slice(bytes).ok()
}

/// Decodes a binary `timestamptz`.
pub fn timestamptz(bytes: &[u8]) -> Option<DateTime<Utc>> {
    let micros = i64::from_be_bytes(bytes.try_into().ok()?);
    DateTime::from_timestamp_micros(micros.checked_add(PG_EPOCH_MICROS)?)
}

/// The JSON text of a binary `jsonb` (after the version byte).
pub fn jsonb(bytes: &[u8]) -> Option<&[u8]> {
    match bytes.split_first() {
        Some((1, json)) => Some(json),
        _ => None,
    }
}

/// The dimensions of a binary `vector`.
pub fn vector_dims(bytes: &[u8]) -> Option<usize> {
    let dims = i16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]);
    usize::try_from(dims).ok()
}

/// The components of a binary `vector`.
pub fn vector_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .get(4..)
        .unwrap_or_default()
        .chunks_exact(4)
        .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_reads_rows_split_anywhere() {
        let mut enc = Encoder::new();
        enc.row(3).int4(7).text(Some("héllo")).raw(None);
        enc.row(3).int4(-1).text(None).jsonb(br#"{"a":1}"#);
        let bytes = enc.finish();
        for split in 0..bytes.len() {
            let mut dec = Decoder::new();
            let mut rows = Vec::new();
            for piece in [&bytes[..split], &bytes[split..]] {
                dec.push(piece);
                while let Some(row) = dec.next_row().unwrap() {
                    rows.push(
                        row.iter()
                            .map(|f| dec.field(f).map(<[u8]>::to_vec))
                            .collect::<Vec<_>>(),
                    );
                }
            }
            assert!(dec.finished(), "split {split}");
            assert_eq!(rows.len(), 2);
            assert_eq!(int4(rows[0][0].as_deref().unwrap()), Some(7));
            assert_eq!(rows[0][1].as_deref(), Some("héllo".as_bytes()));
            assert_eq!(rows[0][2], None);
            assert_eq!(
                jsonb(rows[1][2].as_deref().unwrap()),
                Some(&br#"{"a":1}"#[..])
            );
        }
    }

    #[test]
    fn timestamps_round_trip() {
        let t = DateTime::from_timestamp_micros(1_760_951_702_318_000).unwrap();
        let mut enc = Encoder::new();
        enc.timestamptz(&t);
        let bytes = enc.take();
        assert_eq!(timestamptz(&bytes[HEADER.len() + 4..]), Some(t));
    }
}
