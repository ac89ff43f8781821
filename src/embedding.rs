//! Validated embeddings: 768 finite values with a non-zero norm.

use entity::EMBEDDING_DIMENSIONS;
use pgvector::Vector;

use crate::error::{Error, Result};

/// A `vector(768)` embedding that passed validation: the right dimension,
/// only finite values, and a non-zero norm (cosine distance is undefined for
/// the zero vector).
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
    /// a value is NaN or infinite, or every value is zero.
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
        let norm_sq: f64 = values.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        if norm_sq == 0.0 {
            return Err(invalid(
                "all values are zero; cosine similarity is undefined for a zero vector".into(),
            ));
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
    fn accepts_tiny_but_non_zero_vectors() {
        let mut v = vec![0.0; 768];
        v[0] = 1e-30;
        assert!(Embedding::new(v).is_ok());
    }
}
