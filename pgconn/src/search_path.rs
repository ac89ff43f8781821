//! Schema lists: `DATABASE_SCHEMA=app,public` (or `-s app,public`) as a
//! `search_path` value, parsed one way by the library, the migrator and
//! the migration tool.

/// The `search_path` value for a schema setting (`-s app`,
/// `DATABASE_SCHEMA=app,public`): each comma-separated name quoted as an
/// identifier, unless it is quoted already (as sea-orm does for its
/// `set_schema_search_path`).
///
/// ```
/// use pgconn::quote_search_path;
/// assert_eq!(quote_search_path("app"), "\"app\"");
/// assert_eq!(quote_search_path("app, public"), "\"app\", \"public\"");
/// assert_eq!(quote_search_path("\"My App\",public"), "\"My App\", \"public\"");
/// assert_eq!(quote_search_path("a\"b"), "\"a\"\"b\"");
/// ```
pub fn quote_search_path(schema: &str) -> String {
    split_schemas(schema)
        .iter()
        .map(|s| {
            if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
                s.clone()
            } else {
                format!("\"{}\"", s.replace('"', "\"\""))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Splits a comma-separated schema list, keeping commas inside quoted
/// names; surrounding blanks and empty names are dropped.
pub fn split_schemas(schema: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in schema.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_lists_are_quoted_like_sea_orm_does() {
        assert_eq!(quote_search_path("public"), "\"public\"");
        assert_eq!(
            quote_search_path(" app ,\"x,y\", public"),
            "\"app\", \"x,y\", \"public\""
        );
        assert_eq!(quote_search_path(""), "");
    }
}
