//! Search tuning policies, as pure functions of what the library knows.
//!
//! HNSW recall at a fixed `hnsw.ef_search` falls as the table grows. The
//! library therefore picks `ef_search` from the table's size: unless
//! [`crate::DbConfig::hnsw_ef_search`] fixes it, each whole-table search
//! sets `hnsw.ef_search` to [`ef_search_for`] of `pg_class.reltuples` of
//! `resume_chunks` (kept current by autovacuum and ANALYZE), computed by
//! the server inside the search statement itself: 100 up to 500k chunks,
//! 120 at 1M, 160 at 10M, 230 at 100M.
//!
//! The constants come from BENCHMARKS.md ("A million chunks"), measured
//! with the index the migrations make (m008: `ef_construction` 200). At 1M
//! chunks recall@10 was 0.9595-0.975 at `ef_search` 100 (five runs, two
//! builds of the graph; the lowest with 2% of the rows deleted and not yet
//! vacuumed), 0.9645 at 120 and 0.9645-0.99 at 150, and the p50 latency on
//! the 2-core benchmark machine was within its noise for all three once
//! searches took one round trip (2.4-4.3 ms per round; the 5 ms target).
//! 120 is the smallest value that gave the recall of 150 there; at 100k,
//! 100 gives more than 0.98. Beyond 1M the growth (×1.41 per 10× rows) is
//! extrapolated from how recall fell between 100k and 1M, not measured.
//! Applications that want more recall for more latency fix the value with
//! [`crate::DbConfig::hnsw_ef_search`]. Very high values make the planner
//! prefer an exact scan, which is why the value is capped.

/// `ef_search` for tables up to [`EF_SEARCH_BASE_ROWS`] rows.
pub const EF_SEARCH_BASE: u32 = 100;

/// Table size up to which [`EF_SEARCH_BASE`] is enough.
pub const EF_SEARCH_BASE_ROWS: u64 = 500_000;

/// How fast `ef_search` grows beyond [`EF_SEARCH_BASE_ROWS`]: it is
/// multiplied by `(rows / EF_SEARCH_BASE_ROWS) ^ EF_SEARCH_GROWTH`.
pub const EF_SEARCH_GROWTH: f64 = 0.15;

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
/// assert!(ef_search_for(10_000_000, 10) > ef_search_for(1_000_000, 10));
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

/// [`ef_search_for`] as an SQL expression of type `text` for `k` results,
/// on `pg_class.reltuples` of the `resume_chunks` that the `search_path`
/// finds: the library sends it inside the search's `set_config` statement,
/// so the table's size costs no extra round trip. The integration tests
/// check that both give the same values.
pub(crate) fn ef_search_sql(k: u32) -> String {
    format!(
        "least({max}, greatest({k}, ceil({base}::float8 * power(greatest(1.0::float8, \
           coalesce((SELECT reltuples FROM pg_class WHERE oid = to_regclass('resume_chunks')), \
                    0)::float8 / {rows}::float8), {growth}::float8) / 10) * 10))::int::text",
        max = EF_SEARCH_MAX,
        base = EF_SEARCH_BASE,
        rows = EF_SEARCH_BASE_ROWS,
        growth = EF_SEARCH_GROWTH,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_values() {
        assert_eq!(ef_search_for(300_000, 10), 100);
        assert_eq!(ef_search_for(1_000_000, 10), 120);
        assert_eq!(ef_search_for(10_000_000, 10), 160);
        assert_eq!(ef_search_for(100_000_000, 10), 230);
    }

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
        assert!(ef_search_for(10_000_000, 10) > EF_SEARCH_BASE);
    }

    #[test]
    fn at_least_k_and_at_most_the_pgvector_limit() {
        assert_eq!(ef_search_for(0, 250), 250);
        assert_eq!(ef_search_for(0, 1000), 1000);
        assert_eq!(ef_search_for(u64::MAX, 10), EF_SEARCH_MAX);
        assert_eq!(ef_search_for(u64::MAX, 5000), EF_SEARCH_MAX);
    }
}
