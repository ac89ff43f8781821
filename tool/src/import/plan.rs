//! The rules: how each legacy row becomes a row of this schema, is
//! normalized to fit it, or is excluded. Pure functions over rows already
//! read; every decision is recorded for the report. README, "Coming from
//! the TypeScript app", lists the same rules for users.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::value::RawValue;
use serde_json::{Value as Json, json};
use uuid::Uuid;

use super::report::{Exclusion, Normalization, TableCounts, Warning};
use migration::detect::LegacyVersion;

// The library's rules, one definition each (`mockinterview_db`).
pub use entity::EMBEDDING_DIMENSIONS;
use mockinterview_db::EmbeddingModel;
use mockinterview_db::embedding::MODEL_KEY;
use mockinterview_db::preferences::{
    self, MAX_DURATION_MINUTES, MAX_LANGUAGES, MIN_DURATION_MINUTES, Preferences,
};
use mockinterview_db::profiles::MAX_UID_CHARS;

/// A preference value as the schema stores it (`"medium"`, `"system"`).
fn stored<T: serde::Serialize>(value: T) -> String {
    match serde_json::to_value(value) {
        Ok(Json::String(s)) => s,
        other => unreachable!("preference enums serialize as strings: {other:?}"),
    }
}

/// Metadata keys the import writes next to the rewritten `user_id` and
/// `resume_id`.
pub const LEGACY_KEYS: [&str; 5] = [
    "legacy_user_id",
    "legacy_resume_id",
    "legacy_chunk_index",
    "legacy_created_at",
    "legacy_id",
];

/// A `user_profiles` row of the source.
#[derive(Clone, Debug)]
pub struct LegacyProfile {
    /// `id`.
    pub id: i32,
    /// `firebase_uid` as stored.
    pub uid: String,
    /// `firebase_uid` in Unicode NFC (computed by the source server).
    pub uid_nfc: String,
    /// `email` (never NULL in the app's schema).
    pub email: String,
    /// `display_name`.
    pub display_name: Option<String>,
    /// `photo_url`.
    pub photo_url: Option<String>,
    /// `created_at`, interpreted in the source's time zone.
    pub created_at: Option<DateTime<Utc>>,
    /// `updated_at`, likewise.
    pub updated_at: Option<DateTime<Utc>>,
    /// The full row (`to_jsonb`).
    pub original: Json,
}

/// A `user_preferences` row of the source.
#[derive(Clone, Debug)]
pub struct LegacyPreferences {
    /// `id`.
    pub id: i32,
    /// `user_id` (nullable in the app's schema).
    pub user_id: Option<i32>,
    /// `interview_difficulty`.
    pub difficulty: Option<String>,
    /// `interview_duration`.
    pub duration: Option<i32>,
    /// `preferred_languages` (elements may be NULL).
    pub languages: Option<Vec<Option<String>>>,
    /// `theme`.
    pub theme: Option<String>,
    /// `created_at`.
    pub created_at: Option<DateTime<Utc>>,
    /// `updated_at`.
    pub updated_at: Option<DateTime<Utc>>,
    /// The full row.
    pub original: Json,
}

/// A `resumes` row of the source, without its PDF bytes.
#[derive(Clone, Debug)]
pub struct LegacyResume {
    /// `id`.
    pub id: i32,
    /// `user_id` (nullable).
    pub user_id: Option<i32>,
    /// `title`.
    pub title: String,
    /// `file_name` (nullable in v1/v2).
    pub file_name: Option<String>,
    /// `file_path`.
    pub file_path: Option<String>,
    /// `file_size`.
    pub file_size: Option<i32>,
    /// `content`.
    pub content: Option<String>,
    /// `octet_length(file_data)`, NULL without bytes.
    pub data_len: Option<i64>,
    /// First bytes of `file_data`, hex.
    pub data_head: Option<String>,
    /// `is_primary`.
    pub is_primary: Option<bool>,
    /// `created_at`.
    pub created_at: Option<DateTime<Utc>>,
    /// `updated_at`.
    pub updated_at: Option<DateTime<Utc>>,
    /// `metadata.file_name` of one of its chunks (asked only when
    /// `file_name` is empty).
    pub chunk_file_name: Option<String>,
    /// `metadata.user_id` of its chunks (asked only when `user_id` is NULL).
    pub chunk_user_ids: Vec<String>,
    /// The full row without `file_data`.
    pub original: Json,
}

/// A profile to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileRow {
    /// New id.
    pub id: Uuid,
    /// Legacy id (`None` for profiles created for v0 chunks).
    pub legacy_id: Option<i32>,
    /// `firebase_uid` (NFC).
    pub firebase_uid: String,
    /// `email`.
    pub email: Option<String>,
    /// `display_name`.
    pub display_name: Option<String>,
    /// `photo_url`.
    pub photo_url: Option<String>,
    /// `created_at`.
    pub created_at: DateTime<Utc>,
    /// `updated_at`.
    pub updated_at: DateTime<Utc>,
}

/// Preferences to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreferencesRow {
    /// New id.
    pub id: Uuid,
    /// Legacy id.
    pub legacy_id: i32,
    /// Owner.
    pub user_id: Uuid,
    /// `difficulty`.
    pub difficulty: String,
    /// `duration`.
    pub duration: i32,
    /// `languages`.
    pub languages: Vec<String>,
    /// `theme`.
    pub theme: String,
    /// `created_at`.
    pub created_at: DateTime<Utc>,
    /// `updated_at`.
    pub updated_at: DateTime<Utc>,
}

/// A resume to write (its PDF bytes are streamed from the source).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeRow {
    /// New id.
    pub id: Uuid,
    /// Legacy id.
    pub legacy_id: i32,
    /// Owner.
    pub user_id: Uuid,
    /// `title`.
    pub title: String,
    /// `file_name`.
    pub file_name: String,
    /// `file_path`.
    pub file_path: Option<String>,
    /// `file_size`.
    pub file_size: i64,
    /// `content`.
    pub content: Option<String>,
    /// `is_primary`.
    pub is_primary: bool,
    /// `created_at`.
    pub created_at: DateTime<Utc>,
    /// `updated_at`.
    pub updated_at: DateTime<Utc>,
}

/// Decisions and records shared by every rule.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Per legacy table.
    pub tables: BTreeMap<String, TableCounts>,
    /// Changed values.
    pub normalizations: Vec<Normalization>,
    /// Left-out rows (their `row` may be filled in later).
    pub exclusions: Vec<Exclusion>,
    /// Notes.
    pub warnings: Vec<Warning>,
}

impl Ledger {
    fn read(&mut self, table: &str) {
        self.tables.entry(table.to_owned()).or_default().read += 1;
    }

    fn imported(&mut self, table: &str) {
        self.tables.entry(table.to_owned()).or_default().imported += 1;
    }

    /// Adds rows read and imported (the exclusions count themselves).
    pub fn add(&mut self, table: &str, read: u64, imported: u64) {
        let c = self.tables.entry(table.to_owned()).or_default();
        c.read += read;
        c.imported += imported;
    }

    /// Records an excluded row.
    pub fn exclude(&mut self, table: &str, legacy_id: Json, reason: String, row: Json) {
        self.tables.entry(table.to_owned()).or_default().excluded += 1;
        self.exclusions.push(Exclusion {
            table: table.to_owned(),
            legacy_id,
            reason,
            row,
        });
    }

    fn normalize(
        &mut self,
        table: &str,
        legacy_id: i32,
        column: &str,
        before: Json,
        after: Json,
        rule: &str,
    ) {
        self.normalizations.push(Normalization {
            table: table.to_owned(),
            legacy_id: json!(legacy_id),
            column: column.to_owned(),
            before,
            after,
            rule: rule.to_owned(),
        });
    }

    fn warn(&mut self, table: &str, legacy_id: i32, message: String) {
        self.warnings.push(Warning {
            table: Some(table.to_owned()),
            legacy_id: Some(json!(legacy_id)),
            message,
        });
    }
}

/// RFC 3339 with milliseconds, as the report shows times.
pub fn show_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Fills NULL timestamps: `created_at` from `updated_at`, else the import
/// time; `updated_at` from `created_at`. Records each fill.
fn timestamps(
    ledger: &mut Ledger,
    table: &str,
    legacy_id: i32,
    created: Option<DateTime<Utc>>,
    updated: Option<DateTime<Utc>>,
    import_time: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let created_at = match (created, updated) {
        (Some(c), _) => c,
        (None, Some(u)) => {
            ledger.normalize(
                table,
                legacy_id,
                "created_at",
                Json::Null,
                json!(show_time(&u)),
                "NULL created_at: the row's updated_at, the earliest time known for it",
            );
            u
        }
        (None, None) => {
            ledger.normalize(
                table,
                legacy_id,
                "created_at",
                Json::Null,
                json!(show_time(&import_time)),
                "NULL created_at and updated_at: the import time",
            );
            import_time
        }
    };
    let updated_at = updated.unwrap_or_else(|| {
        ledger.normalize(
            table,
            legacy_id,
            "updated_at",
            Json::Null,
            json!(show_time(&created_at)),
            "NULL updated_at: the row's created_at",
        );
        created_at
    });
    (created_at, updated_at)
}

/// What became of a legacy profile: its new id, or why it was left out.
pub type ProfileOutcome = Result<Uuid, String>;

/// Profiles: uids in NFC (the form the library stores and looks up); two
/// profiles with the same NFC uid are not merged: the older one (by
/// `created_at`, then id) is kept and the other excluded with everything it
/// owns. `email = ''` (phone sign-in) becomes NULL.
pub fn plan_profiles(
    ledger: &mut Ledger,
    rows: &[LegacyProfile],
    import_time: DateTime<Utc>,
) -> (Vec<ProfileRow>, HashMap<i32, ProfileOutcome>) {
    const T: &str = "user_profiles";
    let mut order: Vec<&LegacyProfile> = rows.iter().collect();
    order.sort_by_key(|p| (p.created_at.is_none(), p.created_at, p.id));
    let mut by_nfc: HashMap<&str, &LegacyProfile> = HashMap::new();
    let mut outcome: HashMap<i32, ProfileOutcome> = HashMap::new();
    let mut out = Vec::new();
    for p in order {
        ledger.read(T);
        let chars = p.uid_nfc.chars().count();
        if chars == 0 || chars > MAX_UID_CHARS {
            let reason = format!(
                "firebase_uid {:?} has {chars} characters (in NFC); this schema and Firebase allow \
                 1 to {MAX_UID_CHARS}",
                p.uid
            );
            ledger.exclude(T, json!(p.id), reason.clone(), p.original.clone());
            outcome.insert(
                p.id,
                Err(format!("its profile {} is excluded: {reason}", p.id)),
            );
            continue;
        }
        if let Some(kept) = by_nfc.get(p.uid_nfc.as_str()) {
            let reason = format!(
                "firebase_uid {:?} is the same as profile {}'s {:?} after Unicode NFC \
                 normalization: one user under two spellings. Not merged: profile {} (older) is \
                 imported, this one is left out with its preferences, resumes and chunks; merge \
                 them by hand if they are the same person",
                p.uid, kept.id, kept.uid, kept.id
            );
            ledger.exclude(T, json!(p.id), reason, p.original.clone());
            outcome.insert(
                p.id,
                Err(format!(
                    "its profile {} is excluded (its uid collides with profile {} after NFC)",
                    p.id, kept.id
                )),
            );
            continue;
        }
        by_nfc.insert(&p.uid_nfc, p);
        if p.uid != p.uid_nfc {
            ledger.normalize(
                T,
                p.id,
                "firebase_uid",
                json!(p.uid),
                json!(p.uid_nfc),
                "Unicode NFC, the form the library is moving to for uids",
            );
        }
        let email = if p.email.is_empty() {
            ledger.normalize(
                T,
                p.id,
                "email",
                json!(""),
                Json::Null,
                "'' (the app's stand-in for accounts without e-mail, e.g. phone sign-in) -> NULL",
            );
            None
        } else {
            Some(p.email.clone())
        };
        let (created_at, updated_at) =
            timestamps(ledger, T, p.id, p.created_at, p.updated_at, import_time);
        let id = Uuid::new_v4();
        outcome.insert(p.id, Ok(id));
        ledger.imported(T);
        out.push(ProfileRow {
            id,
            legacy_id: Some(p.id),
            firebase_uid: p.uid_nfc.clone(),
            email,
            display_name: p.display_name.clone(),
            photo_url: p.photo_url.clone(),
            created_at,
            updated_at,
        });
    }
    out.sort_by_key(|r| r.legacy_id);
    (out, outcome)
}

/// The owner of a row that names `user_id`, or why there is none.
fn owner(user_id: Option<i32>, profiles: &HashMap<i32, ProfileOutcome>) -> Result<Uuid, String> {
    let Some(user_id) = user_id else {
        return Err("no owner: user_id is NULL, so it cannot be attributed to anyone".into());
    };
    match profiles.get(&user_id) {
        Some(Ok(id)) => Ok(*id),
        Some(Err(reason)) => Err(reason.clone()),
        None => Err(format!("its profile {user_id} does not exist")),
    }
}

/// `lower(trim(value))`, as the library stores it, when the library
/// accepts it (`parse`).
fn fold<T: serde::Serialize, E>(
    value: Option<&str>,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Option<String> {
    let v = value?.trim().to_lowercase();
    parse(&v).ok().map(stored)
}

/// Preferences: rows without a user are excluded; values this schema's
/// CHECKs reject become the schema's defaults (after folding case and
/// spaces: `'Hard'` is `hard`); languages follow the library's rules.
pub fn plan_preferences(
    ledger: &mut Ledger,
    rows: &[LegacyPreferences],
    profiles: &HashMap<i32, ProfileOutcome>,
    import_time: DateTime<Utc>,
) -> Vec<PreferencesRow> {
    const T: &str = "user_preferences";
    let mut out = Vec::new();
    for p in rows {
        ledger.read(T);
        let user_id = match owner(p.user_id, profiles) {
            Ok(id) => id,
            Err(reason) => {
                ledger.exclude(T, json!(p.id), reason, p.original.clone());
                continue;
            }
        };
        let defaults = Preferences::default();
        let difficulty = match fold(p.difficulty.as_deref(), preferences::parse_difficulty) {
            Some(d) => {
                if p.difficulty.as_deref() != Some(d.as_str()) {
                    ledger.normalize(
                        T,
                        p.id,
                        "difficulty",
                        json!(p.difficulty),
                        json!(d),
                        "interview_difficulty with other case or spaces -> easy/medium/hard",
                    );
                }
                d
            }
            None => {
                ledger.normalize(
                    T,
                    p.id,
                    "difficulty",
                    json!(p.difficulty),
                    json!(stored(defaults.difficulty)),
                    "interview_difficulty not easy/medium/hard -> the default",
                );
                stored(defaults.difficulty)
            }
        };
        let duration = match p.duration {
            Some(d)
                if (i32::from(MIN_DURATION_MINUTES)..=i32::from(MAX_DURATION_MINUTES))
                    .contains(&d) =>
            {
                d
            }
            other => {
                ledger.normalize(
                    T,
                    p.id,
                    "duration",
                    json!(other),
                    json!(defaults.duration_minutes),
                    "interview_duration outside 1..240 minutes -> the default",
                );
                i32::from(defaults.duration_minutes)
            }
        };
        let languages = match &p.languages {
            None => {
                ledger.normalize(
                    T,
                    p.id,
                    "languages",
                    Json::Null,
                    json!([]),
                    "preferred_languages NULL -> no languages ('{}')",
                );
                Vec::new()
            }
            Some(list) => {
                let clean = clean_languages(list);
                let unchanged = list.len() == clean.len()
                    && list
                        .iter()
                        .zip(&clean)
                        .all(|(a, b)| a.as_deref() == Some(b.as_str()));
                if !unchanged {
                    ledger.normalize(
                        T,
                        p.id,
                        "languages",
                        json!(list),
                        json!(clean),
                        "preferred_languages: NULL and blank entries dropped, entries trimmed, \
                         duplicates (ignoring case) dropped, at most 20 of at most 50 characters \
                         kept (the library's rules)",
                    );
                }
                clean
            }
        };
        let theme = match fold(p.theme.as_deref(), preferences::parse_theme) {
            Some(t) => {
                if p.theme.as_deref() != Some(t.as_str()) {
                    ledger.normalize(
                        T,
                        p.id,
                        "theme",
                        json!(p.theme),
                        json!(t),
                        "theme with other case or spaces -> light/dark/system",
                    );
                }
                t
            }
            None => {
                ledger.normalize(
                    T,
                    p.id,
                    "theme",
                    json!(p.theme),
                    json!(stored(defaults.theme)),
                    "theme not light/dark/system -> the default",
                );
                stored(defaults.theme)
            }
        };
        let (created_at, updated_at) =
            timestamps(ledger, T, p.id, p.created_at, p.updated_at, import_time);
        ledger.imported(T);
        out.push(PreferencesRow {
            id: Uuid::new_v4(),
            legacy_id: p.id,
            user_id,
            difficulty,
            duration,
            languages,
            theme,
            created_at,
            updated_at,
        });
    }
    out
}

/// The library's language rules ([`preferences::check_language`]):
/// entries it refuses (NULL, blank, too long, control characters) are
/// dropped, the others trimmed; no duplicates ignoring ASCII case (the
/// first spelling wins); at most [`MAX_LANGUAGES`] entries.
pub fn clean_languages(list: &[Option<String>]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for lang in list.iter().flatten() {
        let Ok(lang) = preferences::check_language(lang) else {
            continue;
        };
        if !out.iter().any(|l| l.eq_ignore_ascii_case(&lang)) {
            out.push(lang);
        }
        if out.len() == MAX_LANGUAGES {
            break;
        }
    }
    out
}

/// What became of a legacy resume: `(new id, owner)`, or why it was left
/// out.
pub type ResumeOutcome = Result<(Uuid, Uuid), String>;

/// The original file name in a multer path
/// (`/app/uploads/<ms>-<random>-<originalname>`).
pub fn name_from_upload_path(path: &str) -> Option<String> {
    let base = path.rsplit(['/', '\\']).next()?;
    let mut parts = base.splitn(3, '-');
    let (ms, random, name) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    (digits(ms) && ms.len() >= 10 && digits(random) && !name.trim().is_empty())
        .then(|| name.to_owned())
}

/// Resumes: rows without an owner are excluded (their chunks' metadata may
/// name a user, which the report says, but ownership is not guessed); empty
/// file names and titles are derived the way the upload route made them;
/// `file_size` is made to match the stored bytes; each user keeps at most
/// one primary resume (the most recently updated).
pub fn plan_resumes(
    ledger: &mut Ledger,
    rows: &[LegacyResume],
    profiles: &HashMap<i32, ProfileOutcome>,
    uid_to_profile: &HashMap<String, i32>,
    import_time: DateTime<Utc>,
) -> (Vec<ResumeRow>, HashMap<i32, ResumeOutcome>) {
    const T: &str = "resumes";
    let mut out: Vec<ResumeRow> = Vec::new();
    let mut outcome = HashMap::new();
    for r in rows {
        ledger.read(T);
        let user_id = match owner(r.user_id, profiles) {
            Ok(id) => id,
            Err(mut reason) => {
                if r.user_id.is_none() && !r.chunk_user_ids.is_empty() {
                    let names: Vec<String> = r
                        .chunk_user_ids
                        .iter()
                        .map(|uid| match uid_to_profile.get(uid) {
                            Some(p) => format!("{uid:?} (profile {p})"),
                            None => format!("{uid:?} (no profile)"),
                        })
                        .collect();
                    reason.push_str(&format!(
                        ". Its chunks' metadata.user_id names {}; ownership is not guessed from \
                         that (the owner was removed from the row): if the resume is theirs, \
                         insert it by hand from this row",
                        names.join(", ")
                    ));
                }
                outcome.insert(r.id, Err(format!("its resume {} is excluded", r.id)));
                ledger.exclude(T, json!(r.id), reason, r.original.clone());
                continue;
            }
        };
        let file_name = match r.file_name.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => r.file_name.clone().unwrap_or_default(),
            _ => {
                let (derived, source) = if let Some(n) =
                    r.file_path.as_deref().and_then(name_from_upload_path)
                {
                    (n, "the name in file_path")
                } else if let Some(n) = r.chunk_file_name.clone().filter(|n| !n.trim().is_empty()) {
                    (n, "metadata.file_name of its chunks")
                } else if !r.title.trim().is_empty() {
                    (format!("{}.pdf", r.title.trim()), "the title + .pdf")
                } else {
                    (format!("resume-{}.pdf", r.id), "resume-<id>.pdf")
                };
                ledger.normalize(
                    T,
                    r.id,
                    "file_name",
                    json!(r.file_name),
                    json!(derived),
                    &format!("empty file_name -> {source}"),
                );
                derived
            }
        };
        let title = if r.title.trim().is_empty() {
            let stem = strip_pdf(&file_name);
            let derived = if stem.trim().is_empty() {
                "Untitled resume".to_owned()
            } else {
                stem.to_owned()
            };
            ledger.normalize(
                T,
                r.id,
                "title",
                json!(r.title),
                json!(derived),
                "empty title -> the file name without .pdf (what the upload route used)",
            );
            derived
        } else {
            r.title.clone()
        };
        let file_size = match (r.data_len, r.file_size) {
            (Some(len), size) => {
                if size.map(i64::from) != Some(len) {
                    ledger.normalize(
                        T,
                        r.id,
                        "file_size",
                        json!(size),
                        json!(len),
                        "file_size -> octet_length(file_data), the size of the stored PDF",
                    );
                }
                len
            }
            (None, Some(size)) if size >= 0 => i64::from(size),
            (None, size) => {
                ledger.normalize(
                    T,
                    r.id,
                    "file_size",
                    json!(size),
                    json!(0),
                    "file_size unknown or negative and no PDF stored in the database -> 0",
                );
                0
            }
        };
        if let Some(head) = &r.data_head
            && !head.starts_with("255044462d")
        {
            ledger.warn(
                T,
                r.id,
                format!(
                    "file_data is not a PDF (it starts with bytes {head}, not %PDF-): kept byte \
                     for byte; the library returns it as stored"
                ),
            );
        }
        if r.data_len.is_none() {
            match &r.file_path {
                Some(path) => ledger.warn(
                    T,
                    r.id,
                    format!(
                        "the PDF is not in the database but on the old app server's disk at \
                         {path:?}: copy the uploads directory to where the new application reads \
                         file_path"
                    ),
                ),
                None => ledger.warn(
                    T,
                    r.id,
                    "no PDF recorded (neither file_data nor file_path): the library reports it \
                     as missing"
                        .into(),
                ),
            }
        }
        let is_primary = match r.is_primary {
            Some(p) => p,
            None => {
                ledger.normalize(
                    T,
                    r.id,
                    "is_primary",
                    Json::Null,
                    json!(false),
                    "is_primary NULL -> false",
                );
                false
            }
        };
        let (created_at, updated_at) =
            timestamps(ledger, T, r.id, r.created_at, r.updated_at, import_time);
        let id = Uuid::new_v4();
        outcome.insert(r.id, Ok((id, user_id)));
        ledger.imported(T);
        out.push(ResumeRow {
            id,
            legacy_id: r.id,
            user_id,
            title,
            file_name,
            file_path: r.file_path.clone(),
            file_size,
            content: r.content.clone(),
            is_primary,
            created_at,
            updated_at,
        });
    }
    one_primary_per_user(ledger, &mut out);
    (out, outcome)
}

fn strip_pdf(name: &str) -> &str {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".pdf") {
        &name[..name.len() - 4]
    } else {
        name
    }
}

/// Keeps the most recently updated primary resume of each user (then the
/// most recently created, then the highest legacy id: the last one the app
/// marked).
fn one_primary_per_user(ledger: &mut Ledger, rows: &mut [ResumeRow]) {
    let mut by_user: HashMap<Uuid, Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        if r.is_primary {
            by_user.entry(r.user_id).or_default().push(i);
        }
    }
    let mut users: Vec<_> = by_user.into_values().filter(|v| v.len() > 1).collect();
    users.sort();
    for mut indexes in users {
        indexes.sort_by_key(|&i| (rows[i].updated_at, rows[i].created_at, rows[i].legacy_id));
        let keep = *indexes.last().expect("more than one");
        let kept = rows[keep].legacy_id;
        for &i in &indexes[..indexes.len() - 1] {
            rows[i].is_primary = false;
            ledger.normalize(
                "resumes",
                rows[i].legacy_id,
                "is_primary",
                json!(true),
                json!(false),
                &format!(
                    "the user had several primary resumes (the app's check raced); resume {kept}, \
                     the most recently updated, stays primary"
                ),
            );
        }
    }
}

/// A chunk as read from the source (field bytes of one `COPY` row).
#[derive(Debug)]
pub struct LegacyChunk<'a> {
    /// The id: a number (v2+) or a uuid string (v0, v1).
    pub legacy_id: Json,
    /// The id, when it is a uuid (kept as the new id).
    pub uuid: Option<Uuid>,
    /// `metadata` JSON text.
    pub metadata: Option<&'a [u8]>,
    /// `vector_dims(embedding)`, `None` for NULL.
    pub dims: Option<usize>,
    /// `resume_id` column (v2+).
    pub resume_id_column: Option<i32>,
    /// `chunk_index` column (v2+).
    pub chunk_index_column: Option<i32>,
    /// `created_at` column (v2+).
    pub created_at_column: Option<DateTime<Utc>>,
}

/// Where an imported chunk goes.
#[derive(Debug, PartialEq, Eq)]
pub struct ChunkTarget {
    /// Its id (the legacy uuid, or a new one).
    pub id: Uuid,
    /// Its rewritten metadata (JSON text).
    pub metadata: Vec<u8>,
    /// The owner (for v0, maybe a profile created now).
    pub user_id: Uuid,
}

/// Rules for chunks, applied row by row while they stream.
#[derive(Debug)]
pub struct ChunkRules {
    version: LegacyVersion,
    /// The stamp every imported chunk gets (`metadata.embedding_model`).
    model_stamp: String,
    /// Exact Firebase uid -> new profile id, or why the profile is excluded.
    profiles_by_uid: HashMap<String, ProfileOutcome>,
    /// Legacy resume id -> (new id, owner), or why it is excluded.
    resumes: HashMap<i32, ResumeOutcome>,
    /// v0: profiles created for the uids chunks name (uid -> id, NFC uid).
    created: BTreeMap<String, (Uuid, String)>,
    created_nfc: HashMap<String, String>,
}

impl ChunkRules {
    /// Rules for `version`, with the outcome of every profile (by exact uid)
    /// and resume.
    pub fn new(
        version: LegacyVersion,
        model: &EmbeddingModel,
        profiles_by_uid: HashMap<String, ProfileOutcome>,
        resumes: HashMap<i32, ResumeOutcome>,
    ) -> Self {
        Self {
            version,
            model_stamp: model.stamp().to_string(),
            profiles_by_uid,
            resumes,
            created: BTreeMap::new(),
            created_nfc: HashMap::new(),
        }
    }

    /// Profiles created for v0 chunks: `(uid as in the chunks, new id, NFC
    /// uid)`.
    pub fn created_profiles(&self) -> impl Iterator<Item = (&String, &Uuid, &String)> {
        self.created.iter().map(|(uid, (id, nfc))| (uid, id, nfc))
    }

    /// Where `chunk` goes, or why it is left out. `nfc` is the NFC form of
    /// the chunk's `metadata.user_id` (computed by the source server).
    ///
    /// # Errors
    /// The reason the chunk is excluded.
    pub fn map(
        &mut self,
        chunk: &LegacyChunk<'_>,
        nfc: Option<&str>,
    ) -> Result<ChunkTarget, String> {
        match chunk.dims {
            // Imported as it is (the schema allows it; searches skip it),
            // with a warning: re-embedding fills it in.
            None => {}
            Some(d) if d != EMBEDDING_DIMENSIONS => {
                return Err(format!(
                    "its embedding has {d} dimensions; this schema stores vector(768)"
                ));
            }
            Some(_) => {}
        }
        let Some(text) = chunk.metadata else {
            return Err("no metadata, so no user: it cannot be attributed to anyone".into());
        };
        let meta: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(text)
            .map_err(|e| format!("metadata is not a JSON object ({e})"))?;
        if let Some(key) = LEGACY_KEYS
            .iter()
            .chain(&[MODEL_KEY])
            .find(|k| meta.contains_key(**k))
        {
            return Err(format!(
                "its metadata already has the key {key}, which the import writes"
            ));
        }
        let raw_user = meta.get("user_id");
        let uid = match raw_user.map(|r| serde_json::from_str::<Json>(r.get())) {
            Some(Ok(Json::String(s))) => s,
            Some(Ok(Json::Number(n))) => n.to_string(),
            None | Some(Ok(Json::Null)) => {
                return Err(
                    "no user: its metadata has no user_id (written before the app recorded \
                     one), so it cannot be attributed to anyone"
                        .into(),
                );
            }
            Some(_) => return Err("metadata.user_id is not a Firebase uid".into()),
        };
        let user_id = match self.profiles_by_uid.get(&uid) {
            Some(Ok(id)) => *id,
            Some(Err(reason)) => return Err(reason.clone()),
            None if self.version == LegacyVersion::V0 => self.created_profile(&uid, nfc)?,
            None => {
                return Err(format!(
                    "metadata.user_id {uid:?} names no profile: the account was deleted (the \
                     app's chunk table did not follow deletions)"
                ));
            }
        };
        let raw_resume = meta.get("resume_id");
        let resume_key = match raw_resume.map(|r| serde_json::from_str::<Json>(r.get())) {
            None | Some(Ok(Json::Null)) => None,
            Some(Ok(Json::Number(n))) => match n.as_i64().and_then(|v| i32::try_from(v).ok()) {
                Some(v) => Some(v),
                None => return Err(format!("metadata.resume_id {n} is not a resume id")),
            },
            Some(Ok(Json::String(s))) => match s.trim().parse::<i32>() {
                Ok(v) => Some(v),
                Err(_) => return Err(format!("metadata.resume_id {s:?} is not a resume id")),
            },
            Some(_) => return Err("metadata.resume_id is not a resume id".into()),
        };
        if chunk.resume_id_column.is_some() && chunk.resume_id_column != resume_key {
            return Err(format!(
                "its resume_id column ({:?}) and metadata.resume_id ({:?}) disagree",
                chunk.resume_id_column, resume_key
            ));
        }
        let resume_id = match resume_key {
            None => None,
            Some(key) => match self.resumes.get(&key) {
                Some(Ok((id, owner))) => {
                    if *owner != user_id {
                        return Err(format!(
                            "metadata.user_id {uid:?} is not the owner of its resume {key}"
                        ));
                    }
                    Some(*id)
                }
                Some(Err(reason)) => return Err(reason.clone()),
                None => {
                    return Err(format!(
                        "orphan: its resume {key} does not exist (deleted in the app, whose chunk \
                         table had no foreign key)"
                    ));
                }
            },
        };
        let id = chunk.uuid.unwrap_or_else(Uuid::new_v4);
        let mut out = Vec::with_capacity(text.len() + 256);
        out.push(b'{');
        let mut first = true;
        let mut put = |out: &mut Vec<u8>, key: &str, value: &str| {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(
                serde_json::to_string(key)
                    .expect("a string serializes")
                    .as_bytes(),
            );
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        };
        for (key, value) in &meta {
            if key == "user_id" || key == "resume_id" {
                continue;
            }
            put(&mut out, key, value.get());
        }
        put(&mut out, "user_id", &json!(user_id.to_string()).to_string());
        if let Some(r) = raw_user {
            put(&mut out, "legacy_user_id", r.get());
        }
        if let Some(resume_id) = resume_id {
            put(
                &mut out,
                "resume_id",
                &json!(resume_id.to_string()).to_string(),
            );
        }
        if let Some(r) = raw_resume {
            put(&mut out, "legacy_resume_id", r.get());
        }
        if let Some(i) = chunk.chunk_index_column {
            put(&mut out, "legacy_chunk_index", &i.to_string());
        }
        if let Some(t) = &chunk.created_at_column {
            put(
                &mut out,
                "legacy_created_at",
                &json!(show_time(t)).to_string(),
            );
        }
        if chunk.uuid.is_none() {
            put(&mut out, "legacy_id", &chunk.legacy_id.to_string());
        }
        put(&mut out, MODEL_KEY, &self.model_stamp);
        out.push(b'}');
        Ok(ChunkTarget {
            id,
            metadata: out,
            user_id,
        })
    }

    /// v0 has no profiles: the first chunk naming a uid creates one.
    fn created_profile(&mut self, uid: &str, nfc: Option<&str>) -> Result<Uuid, String> {
        if let Some((id, _)) = self.created.get(uid) {
            return Ok(*id);
        }
        let nfc = nfc.unwrap_or(uid).to_owned();
        let chars = nfc.chars().count();
        if chars == 0 || chars > MAX_UID_CHARS {
            return Err(format!(
                "metadata.user_id {uid:?} has {chars} characters; Firebase uids have 1 to \
                 {MAX_UID_CHARS}"
            ));
        }
        if let Some(other) = self.created_nfc.get(&nfc) {
            return Err(format!(
                "metadata.user_id {uid:?} is the same as {other:?} after Unicode NFC \
                 normalization; not merged, the chunks of {other:?} are imported"
            ));
        }
        let id = Uuid::new_v4();
        self.created_nfc.insert(nfc.clone(), uid.to_owned());
        self.created.insert(uid.to_owned(), (id, nfc));
        Ok(id)
    }
}

/// Exact uid -> the outcome of its profile.
pub fn outcome_by_uid(
    rows: &[LegacyProfile],
    outcome: &HashMap<i32, ProfileOutcome>,
) -> HashMap<String, ProfileOutcome> {
    rows.iter()
        .filter_map(|p| outcome.get(&p.id).map(|o| (p.uid.clone(), o.clone())))
        .collect()
}

/// The ids of rows whose outcome is an exclusion.
pub fn excluded_ids<T>(outcome: &HashMap<i32, Result<T, String>>) -> HashSet<i32> {
    outcome
        .iter()
        .filter(|(_, o)| o.is_err())
        .map(|(id, _)| *id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn profile(id: i32, uid: &str, nfc: &str, created: Option<&str>) -> LegacyProfile {
        LegacyProfile {
            id,
            uid: uid.into(),
            uid_nfc: nfc.into(),
            email: String::new(),
            display_name: None,
            photo_url: None,
            created_at: created.map(t),
            updated_at: None,
            original: json!({"id": id}),
        }
    }

    #[test]
    fn nfc_twins_are_not_merged_and_the_older_profile_stays() {
        let mut ledger = Ledger::default();
        let now = t("2026-01-01T00:00:00Z");
        let rows = [
            profile(16, "ren\u{e9}e", "ren\u{e9}e", Some("2025-11-05T08:00:00Z")),
            profile(
                7,
                "rene\u{301}e",
                "ren\u{e9}e",
                Some("2025-10-26T10:05:00Z"),
            ),
        ];
        let (out, outcome) = plan_profiles(&mut ledger, &rows, now);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].legacy_id, Some(7));
        assert_eq!(out[0].firebase_uid, "ren\u{e9}e");
        assert!(outcome[&16].is_err());
        assert_eq!(ledger.exclusions.len(), 1);
        assert_eq!(
            ledger.tables["user_profiles"],
            TableCounts {
                read: 2,
                imported: 1,
                excluded: 1
            }
        );
        // NFC, '' e-mail, NULL updated_at.
        let columns: Vec<&str> = ledger
            .normalizations
            .iter()
            .map(|n| n.column.as_str())
            .collect();
        assert_eq!(columns, ["firebase_uid", "email", "updated_at"]);
    }

    #[test]
    fn languages_follow_the_librarys_rules() {
        let list: Vec<Option<String>> = ["Rust", "rust", "", " ", "Rust", " Go "]
            .iter()
            .map(|s| Some((*s).to_owned()))
            .chain([None])
            .collect();
        assert_eq!(clean_languages(&list), ["Rust", "Go"]);
        let many: Vec<Option<String>> = (0..25).map(|i| Some(format!("L{i}"))).collect();
        assert_eq!(clean_languages(&many).len(), 20);
    }

    #[test]
    fn upload_paths_give_the_original_file_name() {
        assert_eq!(
            name_from_upload_path("/app/uploads/1761768122202-5550123-Eve_Martin.pdf").as_deref(),
            Some("Eve_Martin.pdf")
        );
        assert_eq!(
            name_from_upload_path("/app/uploads/1761768122202-5550123-my-cv-v2.pdf").as_deref(),
            Some("my-cv-v2.pdf")
        );
        assert_eq!(name_from_upload_path("/files/cv.pdf"), None);
    }

    #[test]
    fn chunk_metadata_is_rewritten_and_keeps_the_originals() {
        let user = Uuid::new_v4();
        let resume = Uuid::new_v4();
        let mut rules = ChunkRules::new(
            LegacyVersion::V3,
            &EmbeddingModel::gemini_embedding_001_768(),
            HashMap::from([("uid-1".to_owned(), Ok(user))]),
            HashMap::from([(4, Ok((resume, user)))]),
        );
        let meta = br#"{"user_id": "uid-1", "resume_id": 4, "chunk_index": 1, "loc": {"lines": {"from": 1.50, "to": 2}}}"#;
        let chunk = LegacyChunk {
            legacy_id: json!(9),
            uuid: None,
            metadata: Some(meta),
            dims: Some(768),
            resume_id_column: Some(4),
            chunk_index_column: Some(1),
            created_at_column: Some(t("2025-10-20T09:15:08.370Z")),
        };
        let out = rules.map(&chunk, Some("uid-1")).unwrap();
        let text = String::from_utf8(out.metadata).unwrap();
        // Values other than user_id / resume_id keep their exact text.
        assert!(text.contains(r#""from": 1.50"#), "{text}");
        let v: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(v["user_id"], json!(user.to_string()));
        assert_eq!(v["resume_id"], json!(resume.to_string()));
        assert_eq!(v["legacy_user_id"], json!("uid-1"));
        assert_eq!(v["legacy_resume_id"], json!(4));
        assert_eq!(v["legacy_chunk_index"], json!(1));
        assert_eq!(v["legacy_id"], json!(9));
        assert_eq!(v["legacy_created_at"], json!("2025-10-20T09:15:08.370000Z"));
        assert_eq!(
            v["embedding_model"],
            json!({"name": "gemini-embedding-001", "dimensions": 768})
        );

        let orphan = LegacyChunk {
            resume_id_column: None,
            metadata: Some(br#"{"user_id": "uid-1", "resume_id": 20}"#),
            ..chunk
        };
        assert!(rules.map(&orphan, None).unwrap_err().starts_with("orphan"));
    }
}
