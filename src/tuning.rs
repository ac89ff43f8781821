//! Search tuning policies, as pure functions of what the library knows.
//!
//! HNSW recall at a fixed `hnsw.ef_search` falls as the table grows
//! (BENCHMARKS.md: at 100 it was 0.97 at 100k chunks, 0.95 at 300k). The
//! library therefore picks `ef_search` from the table's size: the caller
//! reads `pg_class.reltuples` of `resume_chunks` (cheap, refreshed by
//! autovacuum/ANALYZE), caches it for a few minutes, and applies
//! [`ef_search_for`] per search (`SET LOCAL hnsw.ef_search`).
//!
//! The constants come from the measurements in BENCHMARKS.md ("Whole-table
//! search at 1M chunks"): recall@10 ≥ 0.95 at every measured size with p50
//! within 5 ms on the 2-core benchmark machine, while small tables keep the
//! cheaper value (at 100k rows, 400 made the planner prefer an exact scan).

/// `ef_search` for tables up to [`EF_SEARCH_BASE_ROWS`] rows.
pub const EF_SEARCH_BASE: u32 = 100;

/// Table size up to which [`EF_SEARCH_BASE`] is enough.
pub const EF_SEARCH_BASE_ROWS: u64 = 100_000;

/// How fast `ef_search` grows beyond [`EF_SEARCH_BASE_ROWS`]: it is
/// multiplied by `(rows / EF_SEARCH_BASE_ROWS) ^ EF_SEARCH_GROWTH`.
pub const EF_SEARCH_GROWTH: f64 = 0.4;

/// Upper bound: pgvector accepts `hnsw.ef_search` up to 1000.
pub const EF_SEARCH_MAX: u32 = 1000;

/// The `hnsw.ef_search` for a whole-table search of the top `k` in a table
/// of `table_rows` rows (`reltuples`; negative or unknown counts as 0).
///
/// Never below `k` (an HNSW scan returns at most `ef_search` rows unless
/// iterative scans continue it), rounded up to a multiple of 10, at most
/// [`EF_SEARCH_MAX`].
///
/// ```
/// use mockinterview_db::tuning::ef_search_for;
/// assert_eq!(ef_search_for(50_000, 10), 100);
/// assert!(ef_search_for(1_000_000, 10) > ef_search_for(300_000, 10));
/// assert_eq!(ef_search_for(1_000, 500), 500);
/// ```
pub fn ef_search_for(table_rows: u64, k: u32) -> u32 {
    let base = f64::from(EF_SEARCH_BASE);
    let scaled = if table_rows <= EF_SEARCH_BASE_ROWS {
        base
    } else {
        base * (table_rows as f64 / EF_SEARCH_BASE_ROWS as f64).powf(EF_SEARCH_GROWTH)
    };
    let rounded = ((scaled / 10.0).ceil() * 10.0).min(f64::from(EF_SEARCH_MAX)) as u32;
    rounded.max(k).min(EF_SEARCH_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_tables_keep_the_base() {
        for rows in [0, 1, 10_000, EF_SEARCH_BASE_ROWS] {
            assert_eq!(ef_search_for(rows, 10), EF_SEARCH_BASE, "{rows}");
        }
    }

    #[test]
    fn grows_with_the_table_and_never_shrinks() {
        let mut last = 0;
        for rows in (0..=50).map(|i| i * 100_000) {
            let ef = ef_search_for(rows, 10);
            assert!(ef >= last, "{rows}: {ef} < {last}");
            assert_eq!(ef % 10, 0);
            last = ef;
        }
        assert!(ef_search_for(1_000_000, 10) > EF_SEARCH_BASE);
    }

    #[test]
    fn at_least_k_and_at_most_the_pgvector_limit() {
        assert_eq!(ef_search_for(0, 250), 250);
        assert_eq!(ef_search_for(0, 1000), 1000);
        assert_eq!(ef_search_for(u64::MAX, 10), EF_SEARCH_MAX);
        assert_eq!(ef_search_for(u64::MAX, 5000), EF_SEARCH_MAX);
    }
}
