//! Validated embeddings: 768 finite values whose norm pgvector can compute.

use entity::EMBEDDING_DIMENSIONS;
use pgvector::Vector;

use crate::error::{Error, Result};

/// A `vector(768)` embedding that passed validation: the right dimension,
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
/// use mockinterview_db::Embedding;
///
/// let ok = Embedding::new(vec![0.5; 768]).unwrap();
/// assert_eq!(ok.as_slice().len(), 768);
/// assert!(Embedding::new(vec![0.5; 3]).is_err());
/// assert!(Embedding::new(vec![0.0; 768]).is_err());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    /// Validates `values`.
    ///
    /// # Errors
    /// [`Error::Validation`] (field `embedding`) when the length is not 768,
    /// a value is NaN or infinite, every value is zero, or the sum of squares
    /// in `f32` is not a normal number (see [`Embedding`]).
    pub fn new(values: Vec<f32>) -> Result<Self> {
        if values.len() != EMBEDDING_DIMENSIONS {
            return Err(invalid(format!(
                "expected {EMBEDDING_DIMENSIONS} dimensions, got {}; use the model that \
                 produced the stored embeddings (text-embedding-004, 768 dims)",
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
        Ok(Self(values))
    }

    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// Converts into the pgvector type used by the entities.
    pub fn to_vector(&self) -> Vector {
        Vector::from(self.0.clone())
    }
}

impl TryFrom<Vec<f32>> for Embedding {
    type Error = Error;

    fn try_from(values: Vec<f32>) -> Result<Self> {
        Self::new(values)
    }
}

impl From<Embedding> for Vec<f32> {
    fn from(e: Embedding) -> Self {
        e.0
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
            let err = Embedding::new(bad).unwrap_err();
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
            let err = Embedding::new(v).unwrap_err();
            assert!(
                err.to_string().contains("single precision"),
                "{value}: {err}"
            );
        }
        let err = Embedding::new(vec![1e18; 768]).unwrap_err();
        assert!(err.to_string().contains("inf"), "{err}");
    }

    #[test]
    fn accepts_small_and_large_vectors_pgvector_can_compute() {
        for value in [1e-18_f32, 1e-3, 1.0, 1e18] {
            let mut v = vec![0.0; 768];
            v[0] = value;
            assert!(Embedding::new(v).is_ok(), "{value}");
        }
        // 768 values of 1e-6: sum of squares 7.7e-10, fine.
        assert!(Embedding::new(vec![1e-6; 768]).is_ok());
    }
}
