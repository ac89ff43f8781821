//! Raw-PostgreSQL baselines over tokio-postgres: binary `COPY` with
//! pgvector's `ToSql` (the practical limit) and LangChain-style multi-row
//! `INSERT` with text-format vectors.

use futures_util::pin_mut;
use pgvector::Vector;
use serde_json::json;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

/// Error type of the harness.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One chunk row as the baselines write it.
#[derive(Clone)]
pub struct RawRow<'a> {
    /// Chunk id.
    pub id: Uuid,
    /// Text.
    pub text: &'a str,
    /// Owner.
    pub user_id: Uuid,
    /// Resume.
    pub resume_id: Uuid,
    /// Extra metadata `section`.
    pub section: &'a str,
    /// Extra metadata `page`.
    pub page: i64,
    /// Embedding.
    pub vector: &'a [f32],
}

impl RawRow<'_> {
    /// The metadata document, with the same keys the library writes.
    pub fn metadata(&self) -> serde_json::Value {
        json!({
            "page": self.page,
            "section": self.section,
            "user_id": self.user_id.to_string(),
            "resume_id": self.resume_id.to_string(),
        })
    }
}

/// Opens a tokio-postgres connection (the driver task runs on tokio).
pub async fn connect(url: &str) -> Result<Client, BoxError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("tokio-postgres connection ended: {e}");
        }
    });
    Ok(client)
}

/// The OID-carrying `Type` of pgvector's `vector` in this database.
pub async fn vector_type(client: &Client) -> Result<Type, BoxError> {
    let stmt = client.prepare("SELECT $1::vector").await?;
    Ok(stmt.params()[0].clone())
}

/// Binary `COPY` of `rows` into `table` through `BinaryCopyInWriter`.
pub async fn copy_rows<'a>(
    client: &Client,
    table: &str,
    vector_ty: &Type,
    rows: impl Iterator<Item = RawRow<'a>>,
) -> Result<u64, BoxError> {
    let sink = client
        .copy_in(&format!(
            "COPY {table} (id, text, metadata, embedding) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[Type::UUID, Type::TEXT, Type::JSONB, vector_ty.clone()],
    );
    pin_mut!(writer);
    for r in rows {
        let metadata = r.metadata();
        let v = Vector::from(r.vector.to_vec());
        writer
            .as_mut()
            .write(&[&r.id, &r.text, &metadata, &v])
            .await?;
    }
    Ok(writer.finish().await?)
}

/// The text form of a vector, `[0.1,0.2,...]`, as LangChain sends it.
pub fn vector_text(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 12);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&x.to_string());
    }
    s.push(']');
    s
}

/// LangChain `PGVectorStore` style: multi-row `INSERT` statements of up to
/// `batch` rows, metadata and vectors sent as text parameters and parsed by
/// the server (`$n::text::jsonb`, `$n::text::vector`), each
/// statement committing on its own.
pub async fn insert_rows<'a>(
    client: &Client,
    table: &str,
    rows: impl Iterator<Item = RawRow<'a>>,
    batch: usize,
) -> Result<u64, BoxError> {
    let rows: Vec<RawRow<'a>> = rows.collect();
    let mut total = 0;
    for chunk in rows.chunks(batch) {
        let mut sql = format!("INSERT INTO {table} (id, text, metadata, embedding) VALUES ");
        let mut owned: Vec<(Uuid, String, String, String)> = Vec::with_capacity(chunk.len());
        for (i, r) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            let p = i * 4;
            sql.push_str(&format!(
                "(${}, ${}, ${}::text::jsonb, ${}::text::vector)",
                p + 1,
                p + 2,
                p + 3,
                p + 4
            ));
            owned.push((
                r.id,
                r.text.to_owned(),
                r.metadata().to_string(),
                vector_text(r.vector),
            ));
        }
        let params: Vec<&(dyn ToSql + Sync)> = owned
            .iter()
            .flat_map(|(id, text, meta, vec)| {
                [
                    id as &(dyn ToSql + Sync),
                    text as &(dyn ToSql + Sync),
                    meta as &(dyn ToSql + Sync),
                    vec as &(dyn ToSql + Sync),
                ]
            })
            .collect();
        total += client.execute(sql.as_str(), &params).await?;
    }
    Ok(total)
}
