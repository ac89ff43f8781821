//! Turning text into [`Embedding`]s: the [`Embedder`] trait (async,
//! batched), [`HashingEmbedder`] (deterministic and offline, for tests and
//! demos) and, with feature `gemini`, [`gemini::GeminiEmbedder`] (Google's
//! `batchEmbedContents`).
//!
//! The library stores and searches embeddings; it does not need an
//! embedder to do so. Embedders are what a re-embedding job and an
//! application's upload path call.

use std::future::Future;

use crate::embedding::{Embedding, EmbeddingModel};
use crate::error::{Error, Result};

#[cfg(feature = "gemini")]
pub mod gemini;

/// What a text is embedded for. Some models (Gemini's `taskType`) embed a
/// document and a query differently, for better retrieval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A chunk to store and search.
    Document,
    /// A search query.
    Query,
}

/// Embeds texts with one model, in batches.
///
/// Contract: `embed` returns exactly one embedding per text, in order, each
/// of [`Embedder::model`]; it accepts at most [`Embedder::max_batch`]
/// texts per call. Implementations retry what is worth retrying themselves;
/// an error means the batch failed and nothing of it is usable.
pub trait Embedder: Send + Sync {
    /// The model whose embeddings this returns.
    fn model(&self) -> &EmbeddingModel;

    /// Most texts one call accepts.
    fn max_batch(&self) -> usize;

    /// Embeds `texts` for `purpose`, in order.
    ///
    /// # Errors
    /// [`Error::Embedder`] when the provider fails or answers wrongly;
    /// [`Error::Validation`] for more than [`Embedder::max_batch`] texts.
    fn embed(
        &self,
        texts: &[String],
        purpose: Purpose,
    ) -> impl Future<Output = Result<Vec<Embedding>>> + Send;
}

/// Refuses a batch larger than `embedder` accepts.
pub(crate) fn check_batch(texts: &[String], max: usize) -> Result<()> {
    if texts.len() > max {
        return Err(Error::Validation {
            field: "texts",
            reason: format!(
                "{} texts in one batch; this embedder accepts at most {max}",
                texts.len()
            ),
        });
    }
    Ok(())
}

/// A deterministic, offline embedder: feature hashing of the lower-cased
/// words (each word adds ±1 at two hashed positions), normalized to unit
/// length. Texts sharing words are similar, so searches over it behave
/// plausibly; it needs no network and gives the same vector for the same
/// text on every machine. For tests, demos and benchmarks, not for
/// production relevance.
///
/// ```
/// use mockinterview_db::embedder::{Embedder, HashingEmbedder, Purpose};
/// use mockinterview_db::EmbeddingModel;
/// # tokio_test(async {
/// let embedder = HashingEmbedder::new(EmbeddingModel::new("hashing-demo", 768).unwrap());
/// let out = embedder
///     .embed(&["Kubernetes, Rust".into(), "rust kubernetes".into()], Purpose::Document)
///     .await
///     .unwrap();
/// assert_eq!(out[0].as_slice(), out[1].as_slice());
/// # });
/// # fn tokio_test(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct HashingEmbedder {
    model: EmbeddingModel,
}

impl HashingEmbedder {
    /// An embedder whose vectors have `model`'s dimension count.
    pub fn new(model: EmbeddingModel) -> Self {
        Self { model }
    }

    /// The vector of one text (never zero: a text without words gets a
    /// fixed unit vector).
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let dims = self.model.dimensions() as usize;
        let mut v = vec![0.0_f32; dims];
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let h = fnv1a(&word.to_lowercase());
            for k in 0..2 {
                let bits = h.rotate_left(32 * k);
                let at = (bits % dims as u64) as usize;
                v[at] += if bits & (1 << 63) == 0 { 1.0 } else { -1.0 };
            }
        }
        if v.iter().all(|&x| x == 0.0) {
            v[0] = 1.0;
        }
        normalize(&mut v);
        v
    }
}

impl Embedder for HashingEmbedder {
    fn model(&self) -> &EmbeddingModel {
        &self.model
    }

    fn max_batch(&self) -> usize {
        1000
    }

    async fn embed(&self, texts: &[String], _purpose: Purpose) -> Result<Vec<Embedding>> {
        check_batch(texts, self.max_batch())?;
        texts
            .iter()
            .map(|t| Embedding::new(&self.model, self.vector(t)))
            .collect()
    }
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for x in v {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
}

/// 64-bit FNV-1a: stable across platforms and releases (unlike std's hasher).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashing_is_deterministic_unit_length_and_word_based() {
        let e = HashingEmbedder::new(EmbeddingModel::new("hashing", 384).unwrap());
        let texts: Vec<String> = [
            "Led a Kubernetes migration",
            "led a kubernetes MIGRATION!",
            "Baked bread",
            "",
        ]
        .map(String::from)
        .to_vec();
        let out = e.embed(&texts, Purpose::Document).await.unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(out[0], out[1]);
        assert_ne!(out[0], out[2]);
        for v in &out {
            let norm: f32 = v.as_slice().iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-5, "{norm}");
            assert_eq!(v.model(), e.model());
        }
        // Fixed across releases: the first values of a known text.
        assert_eq!(e.vector("rust")[..3], e.vector("Rust")[..3]);
        let too_many = vec![String::new(); 1001];
        assert!(matches!(
            e.embed(&too_many, Purpose::Query).await,
            Err(Error::Validation { .. })
        ));
    }
}
