//! Embeddings and the model that made them: [`EmbeddingModel`] (a name and
//! a dimension count) and [`Embedding`] (validated values of one model).
//!
//! Vectors of two models cannot be compared, even at the same dimension
//! count: the spaces differ and the ranking is meaningless. So every chunk
//! the library writes records its model (the reserved metadata key
//! [`MODEL_KEY`]), every [`Embedding`] carries its model, and a search
//! compares only chunks of the handle's model
//! ([`crate::DbConfig::embedding_model`]): a query embedding of another
//! model is refused with [`Error::ModelMismatch`].
//!
//! Chunks without a stamp (rows another service, e.g. LangChain JS
//! `PGVectorStore`, wrote) belong to the model the database **serves**
//! (table `embedding_models`, migration `m010_embedding_models`): the
//! model of the vectors in `resume_chunks`, which a re-embedding job
//! ([`crate::reembed`]) switches. Each search resolves it in its own
//! statement, so a switch is seen at once.

use std::fmt;

use entity::EMBEDDING_DIMENSIONS;
use pgvector::Vector;
use serde_json::{Value as Json, json};

use crate::error::{Error, Result};

/// The metadata key that records a chunk's embedding model:
/// `{"name": "...", "dimensions": N}`. Reserved: a [`crate::NewChunk`]
/// cannot set it.
pub const MODEL_KEY: &str = "embedding_model";

/// Longest model name accepted, in bytes.
pub const MAX_MODEL_NAME_BYTES: usize = 200;

/// Most dimensions accepted for a model (pgvector's `vector` limit).
pub const MAX_MODEL_DIMENSIONS: u32 = 16_000;

/// An embedding model: its name as the provider spells it
/// (`gemini-embedding-001`) and the dimension count of its vectors (768,
/// or another truncation of the same model, which is a different space
/// for search purposes).
///
/// ```
/// use mockinterview_db::EmbeddingModel;
///
/// let m = EmbeddingModel::new("gemini-embedding-001", 768).unwrap();
/// assert_eq!(m.to_string(), "gemini-embedding-001 (768 dimensions)");
/// assert!(EmbeddingModel::new("", 768).is_err());
/// assert!(EmbeddingModel::new("gemini-embedding-001", 0).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EmbeddingModel {
    name: String,
    dimensions: u32,
}

impl EmbeddingModel {
    /// The TypeScript app's model after commit 86f8fc7, and this library's
    /// default: `gemini-embedding-001` truncated to 768 dimensions.
    pub fn gemini_embedding_001_768() -> Self {
        Self {
            name: "gemini-embedding-001".into(),
            dimensions: 768,
        }
    }

    /// The TypeScript app's model until commit 86f8fc7 (768 dimensions).
    /// Google shut it down on 2026-01-14: its vectors can be searched only
    /// with query embeddings made before then, so they need re-embedding.
    pub fn text_embedding_004() -> Self {
        Self {
            name: "text-embedding-004".into(),
            dimensions: 768,
        }
    }

    /// Validates a model name and dimension count.
    ///
    /// # Errors
    /// [`Error::Validation`] (field `embedding_model`) for an empty name,
    /// one over [`MAX_MODEL_NAME_BYTES`] bytes or with characters other than
    /// ASCII letters, digits and `. _ - : / @`, or a dimension count of 0
    /// or over [`MAX_MODEL_DIMENSIONS`].
    pub fn new(name: impl Into<String>, dimensions: u32) -> Result<Self> {
        let name = name.into();
        let invalid = |reason: String| Error::Validation {
            field: "embedding_model",
            reason,
        };
        if name.is_empty() || name.len() > MAX_MODEL_NAME_BYTES {
            return Err(invalid(format!(
                "the model name must have 1 to {MAX_MODEL_NAME_BYTES} bytes, got {}",
                name.len()
            )));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._-:/@".contains(*c)))
        {
            return Err(invalid(format!(
                "the model name {name:?} contains {c:?}; use the provider's name \
                 (ASCII letters, digits and . _ - : / @)"
            )));
        }
        if dimensions == 0 || dimensions > MAX_MODEL_DIMENSIONS {
            return Err(invalid(format!(
                "{dimensions} dimensions; a model has 1 to {MAX_MODEL_DIMENSIONS}"
            )));
        }
        Ok(Self { name, dimensions })
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The dimension count of its vectors.
    pub fn dimensions(&self) -> u32 {
        self.dimensions
    }

    /// The stamp stored under [`MODEL_KEY`] in a chunk's metadata.
    pub fn stamp(&self) -> Json {
        json!({ "name": self.name, "dimensions": self.dimensions })
    }

    /// Reads a stamp written by [`EmbeddingModel::stamp`]; `None` for
    /// anything else.
    pub fn from_stamp(stamp: &Json) -> Option<Self> {
        let name = stamp.get("name")?.as_str()?;
        let dimensions = u32::try_from(stamp.get("dimensions")?.as_u64()?).ok()?;
        if stamp.as_object()?.len() != 2 {
            return None;
        }
        Self::new(name, dimensions).ok()
    }

    /// Whether the library can store and search this model's vectors:
    /// `resume_chunks.embedding` is `vector(768)`.
    pub(crate) fn check_storable(&self) -> Result<()> {
        if self.dimensions as usize == EMBEDDING_DIMENSIONS {
            return Ok(());
        }
        Err(Error::Config(format!(
            "embedding model {self}: this release stores {EMBEDDING_DIMENSIONS}-dimension vectors \
             only (resume_chunks.embedding is vector({EMBEDDING_DIMENSIONS})); truncate the model's \
             output to {EMBEDDING_DIMENSIONS} dimensions (Gemini: output_dimensionality = \
             {EMBEDDING_DIMENSIONS}) and normalize it"
        )))
    }
}

impl fmt::Display for EmbeddingModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} dimensions)", self.name, self.dimensions)
    }
}

/// Which stored chunks a handle's searches compare: those stamped with its
/// model, and the unstamped ones when its model is the one the database
/// serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ModelScope {
    pub model: EmbeddingModel,
    /// `embedding_models` exists (m010 applied): the serving model is read
    /// inside each statement. Without it (the release serves a database one
    /// migration behind) every unstamped chunk is the handle's model, as
    /// for the previous release.
    pub registry: bool,
}

/// The serving model's stamp, in SQL (NULL when none is declared).
pub(crate) const SERVING_STAMP_SQL: &str = "(SELECT jsonb_build_object('name', name, \
     'dimensions', dimensions) FROM embedding_models WHERE serving)";

impl ModelScope {
    /// The SQL condition selecting this scope's rows (those stamped with
    /// the handle's model, and unstamped ones when it is the serving
    /// model); `stamp` is the placeholder bound to
    /// [`EmbeddingModel::stamp`].
    pub fn row_condition(&self, stamp: &str) -> String {
        if self.registry {
            format!("coalesce(metadata->'{MODEL_KEY}', {SERVING_STAMP_SQL}) = {stamp}::jsonb")
        } else {
            format!("coalesce(metadata->'{MODEL_KEY}', {stamp}::jsonb) = {stamp}::jsonb")
        }
    }

    /// A condition that references no row: the handle's model is the one
    /// the database serves (a one-time filter for the planner). `None`
    /// without the registry.
    pub fn gate(&self, stamp: &str) -> Option<String> {
        self.registry
            .then(|| format!("{stamp}::jsonb = {SERVING_STAMP_SQL}"))
    }

    /// Refuses an embedding of another model.
    pub fn check(&self, embedding: &Embedding) -> Result<()> {
        if embedding.model() == &self.model {
            return Ok(());
        }
        Err(Error::ModelMismatch {
            handle: self.model.clone(),
            given: embedding.model().clone(),
        })
    }
}

/// An embedding that passed validation: the dimension count of its model,
/// only finite values, and a norm pgvector can compute with.
///
/// pgvector computes cosine distance in single precision: it sums the
/// squares of the values as `f32`. A vector whose sum of squares underflows
/// to zero there (every value below about `1e-20`, e.g. `[1e-30, 0, ...]`)
/// has no usable norm: every cosine against it comes out undefined or 1.0,
/// and the HNSW index skips it. One whose sum of squares overflows to
/// infinity (values above about `1e19`) fails the same way. Both are
/// rejected: the sum of squares, accumulated in `f32` in order as pgvector
/// does, must be a normal `f32` (from about `1.2e-38` to `3.4e38`).
/// Embedding models produce values around `1e-3..1`, far from both ends.
///
/// ```
/// use mockinterview_db::{Embedding, EmbeddingModel};
///
/// let model = EmbeddingModel::gemini_embedding_001_768();
/// let ok = Embedding::new(&model, vec![0.5; 768]).unwrap();
/// assert_eq!(ok.as_slice().len(), 768);
/// assert_eq!(ok.model(), &model);
/// assert!(Embedding::new(&model, vec![0.5; 3]).is_err());
/// assert!(Embedding::new(&model, vec![0.0; 768]).is_err());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding {
    model: EmbeddingModel,
    values: Vec<f32>,
}

impl Embedding {
    /// Validates `values` as an embedding made by `model`.
    ///
    /// # Errors
    /// [`Error::Validation`] (field `embedding`) when the length is not the
    /// model's dimension count, a value is NaN or infinite, every value is
    /// zero, or the sum of squares in `f32` is not a normal number (see
    /// [`Embedding`]).
    pub fn new(model: &EmbeddingModel, values: Vec<f32>) -> Result<Self> {
        if values.len() != model.dimensions() as usize {
            return Err(invalid(format!(
                "expected {} dimensions for {model}, got {}; truncate the model's output to \
                 the dimension count the model is named with",
                model.dimensions(),
                values.len()
            )));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(invalid(format!(
                "value {i} is {}; embeddings must be finite",
                values[i]
            )));
        }
        if values.iter().all(|&v| v == 0.0) {
            return Err(invalid(
                "all values are zero; cosine similarity is undefined for a zero vector".into(),
            ));
        }
        // pgvector's VectorCosineSimilarity: `norma += ax[i] * ax[i]` in float.
        let norm_sq = values.iter().fold(0.0_f32, |acc, &v| acc + v * v);
        if !norm_sq.is_normal() {
            return Err(invalid(format!(
                "the sum of the squared values is {norm_sq:e} in single precision (as pgvector \
                 computes it), so cosine similarity cannot be computed: values must not all be \
                 tiny (below about 1e-19) or huge (above about 1e19); normalize the vector"
            )));
        }
        Ok(Self {
            model: model.clone(),
            values,
        })
    }

    /// The model that made it.
    pub fn model(&self) -> &EmbeddingModel {
        &self.model
    }

    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        &self.values
    }

    /// Converts into the pgvector type used by the entities.
    pub fn to_vector(&self) -> Vector {
        Vector::from(self.values.clone())
    }
}

impl From<Embedding> for Vec<f32> {
    fn from(e: Embedding) -> Self {
        e.values
    }
}

fn invalid(reason: String) -> Error {
    Error::Validation {
        field: "embedding",
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m() -> EmbeddingModel {
        EmbeddingModel::gemini_embedding_001_768()
    }

    #[test]
    fn stamps_round_trip_and_foreign_stamps_are_not_models() {
        let model = EmbeddingModel::new("models/text-embedding@003", 1536).unwrap();
        assert_eq!(EmbeddingModel::from_stamp(&model.stamp()), Some(model));
        for other in [
            json!("gemini-embedding-001"),
            json!({"name": "x"}),
            json!({"name": "x", "dimensions": 0}),
            json!({"name": "x", "dimensions": -3}),
            json!({"name": "x", "dimensions": 768, "extra": 1}),
            json!({"name": "bad name", "dimensions": 768}),
        ] {
            assert_eq!(EmbeddingModel::from_stamp(&other), None, "{other}");
        }
    }

    #[test]
    fn a_query_of_another_model_or_dimension_count_is_refused() {
        let scope = ModelScope {
            model: m(),
            registry: true,
        };
        let other = EmbeddingModel::text_embedding_004();
        let err = scope
            .check(&Embedding::new(&other, vec![0.5; 768]).unwrap())
            .unwrap_err();
        assert!(matches!(err, Error::ModelMismatch { .. }), "{err}");
        assert!(err.to_string().contains("text-embedding-004"), "{err}");
        scope
            .check(&Embedding::new(&m(), vec![0.5; 768]).unwrap())
            .unwrap();
        let wide = EmbeddingModel::new("gemini-embedding-001", 1536).unwrap();
        assert!(wide.check_storable().is_err());
        assert!(m().check_storable().is_ok());
    }

    #[test]
    fn rejects_wrong_dimension_non_finite_and_zero() {
        for bad in [
            vec![1.0; 767],
            vec![1.0; 769],
            vec![],
            {
                let mut v = vec![1.0; 768];
                v[5] = f32::NAN;
                v
            },
            {
                let mut v = vec![1.0; 768];
                v[767] = f32::INFINITY;
                v
            },
            vec![0.0; 768],
        ] {
            let err = Embedding::new(&m(), bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Validation {
                        field: "embedding",
                        ..
                    }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn rejects_vectors_whose_norm_pgvector_cannot_compute() {
        // Non-zero, but the f32 sum of squares underflows (1e-60) or is
        // subnormal, or overflows.
        for (value, at) in [(1e-30_f32, 0), (1e-20, 3), (1e20, 0), (3e19, 767)] {
            let mut v = vec![0.0; 768];
            v[at] = value;
            let err = Embedding::new(&m(), v).unwrap_err();
            assert!(
                err.to_string().contains("single precision"),
                "{value}: {err}"
            );
        }
        let err = Embedding::new(&m(), vec![1e18; 768]).unwrap_err();
        assert!(err.to_string().contains("inf"), "{err}");
    }

    #[test]
    fn accepts_small_and_large_vectors_pgvector_can_compute() {
        for value in [1e-18_f32, 1e-3, 1.0, 1e18] {
            let mut v = vec![0.0; 768];
            v[0] = value;
            assert!(Embedding::new(&m(), v).is_ok(), "{value}");
        }
        // 768 values of 1e-6: sum of squares 7.7e-10, fine.
        assert!(Embedding::new(&m(), vec![1e-6; 768]).is_ok());
    }
}
