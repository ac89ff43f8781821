//! Writing PostgreSQL's binary `COPY` format (`COPY ... FROM STDIN
//! (FORMAT binary)`): big-endian lengths, `-1` for NULL, `jsonb` as version
//! byte 1 plus the JSON text, `vector` as dimensions, an unused int16 and
//! float4 values. The one encoder of the workspace: the library's chunk
//! writer and the migration tool's import use it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The 19-byte header of the binary format (signature, flags, extension).
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

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

    /// `vector`: int16 dimensions, an unused int16, float4 values.
    pub fn vector(&mut self, values: &[f32]) -> &mut Self {
        self.buf
            .extend_from_slice(&len_i32(4 + values.len() * 4).to_be_bytes());
        self.buf.extend_from_slice(
            &i16::try_from(values.len())
                .unwrap_or(i16::MAX)
                .to_be_bytes(),
        );
        self.buf.extend_from_slice(&0_i16.to_be_bytes());
        for v in values {
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
        self
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
