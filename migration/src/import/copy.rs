//! PostgreSQL's binary `COPY` format: an [`Encoder`] for `COPY ... FROM
//! STDIN (FORMAT binary)` and a streaming [`Decoder`] for `COPY ... TO
//! STDOUT (FORMAT binary)`.
//!
//! The same encoding as the library's chunk loader (`src/chunks.rs`):
//! big-endian lengths, `-1` for NULL, `jsonb` as version byte 1 plus the
//! JSON text, `vector` as dimensions, an unused int16 and float4 values.
//! Fields read from the source can be passed through unchanged
//! ([`Encoder::raw`]): texts, embeddings and PDFs are copied byte for byte.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The 19-byte header of the binary format (signature, flags, extension).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Writes rows in binary `COPY` format into a buffer that the caller sends
/// in pieces ([`Encoder::take`]).
#[derive(Debug)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// A buffer starting with the header.
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(SEND_BYTES + 64 * 1024);
        buf.extend_from_slice(HEADER);
        Self { buf }
    }

    /// Starts a row of `fields` fields.
    pub fn row(&mut self, fields: i16) -> &mut Self {
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self
    }

    /// A field's bytes as they are (`None` for NULL): binary `text`,
    /// `bytea`, `vector`... read from the source.
    pub fn raw(&mut self, bytes: Option<&[u8]>) -> &mut Self {
        match bytes {
            None => self.buf.extend_from_slice(&(-1_i32).to_be_bytes()),
            Some(b) => {
                self.buf.extend_from_slice(&len_i32(b.len()).to_be_bytes());
                self.buf.extend_from_slice(b);
            }
        }
        self
    }

    /// `uuid`.
    pub fn uuid(&mut self, id: &Uuid) -> &mut Self {
        self.raw(Some(id.as_bytes()))
    }

    /// `text` (`None` for NULL).
    pub fn text(&mut self, s: Option<&str>) -> &mut Self {
        self.raw(s.map(str::as_bytes))
    }

    /// `integer`.
    pub fn int4(&mut self, v: i32) -> &mut Self {
        self.raw(Some(&v.to_be_bytes()))
    }

    /// `bigint`.
    pub fn int8(&mut self, v: i64) -> &mut Self {
        self.raw(Some(&v.to_be_bytes()))
    }

    /// `boolean`.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.raw(Some(&[u8::from(v)]))
    }

    /// `timestamptz`.
    pub fn timestamptz(&mut self, t: &DateTime<Utc>) -> &mut Self {
        self.int8(t.timestamp_micros() - PG_EPOCH_MICROS)
    }

    /// `jsonb` from JSON text.
    pub fn jsonb(&mut self, json: &[u8]) -> &mut Self {
        self.buf
            .extend_from_slice(&len_i32(json.len() + 1).to_be_bytes());
        self.buf.push(1);
        self.buf.extend_from_slice(json);
        self
    }

    /// One-dimensional `text[]` without NULL elements.
    pub fn text_array(&mut self, items: &[String]) -> &mut Self {
        const TEXT_OID: i32 = 25;
        let mut body = Vec::with_capacity(20 + items.iter().map(|s| s.len() + 4).sum::<usize>());
        if items.is_empty() {
            body.extend_from_slice(&0_i32.to_be_bytes()); // dimensions
            body.extend_from_slice(&0_i32.to_be_bytes()); // no NULLs
            body.extend_from_slice(&TEXT_OID.to_be_bytes());
        } else {
            body.extend_from_slice(&1_i32.to_be_bytes());
            body.extend_from_slice(&0_i32.to_be_bytes());
            body.extend_from_slice(&TEXT_OID.to_be_bytes());
            body.extend_from_slice(&len_i32(items.len()).to_be_bytes());
            body.extend_from_slice(&1_i32.to_be_bytes()); // lower bound
            for item in items {
                body.extend_from_slice(&len_i32(item.len()).to_be_bytes());
                body.extend_from_slice(item.as_bytes());
            }
        }
        self.raw(Some(&body))
    }

    /// Bytes buffered so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Nothing buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Whether a piece is big enough to send ([`SEND_BYTES`]).
    pub fn is_full(&self) -> bool {
        self.buf.len() >= SEND_BYTES
    }

    /// Takes what is buffered, to send it.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Appends the trailer and takes the rest.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1_i16).to_be_bytes());
        self.buf
    }
}

/// Size of the pieces a `COPY` is sent in: bounded memory, and the server
/// starts inserting while the rest is encoded.
pub const SEND_BYTES: usize = 1 << 20;

fn len_i32(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

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
