//! Property: random sequences of API calls by several users, with valid and
//! invalid inputs (other users' ids, NUL, over-long text, NFD and invisible
//! uids, bad PDFs, reserved and too-deep metadata). After every step:
//! - no call returned another user's data;
//! - a call that failed changed nothing (a checksum of every table);
//! - the database matches a small model (profiles, resumes and chunk counts
//!   per user).
//!
//! 32 cases of up to 30 steps by default, each in a fresh database; set
//! `PROPTEST_CASES` for longer runs. A failure prints the shrunk sequence.

use std::collections::BTreeMap;

use crate::support::TestDb;
use mockinterview_db::chunks::{self, search_chunks};
use mockinterview_db::preferences::{self, PreferencesUpdate};
use mockinterview_db::profiles::{self, FirebaseUser};
use mockinterview_db::resumes::{self, NewResume, PdfUpload};
use mockinterview_db::{Error, NewChunk, SearchQuery, SearchScope};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sea_orm::ConnectionTrait;
use serde_json::json;
use uuid::Uuid;

use crate::support::*;

const USERS: usize = 3;
/// Base uids; user 2's has an accent, so NFD spellings differ.
const UIDS: [&str; USERS] = ["ada", "bob", "jos\u{e9}"];

/// How a call spells a text input.
#[derive(Clone, Copy, Debug)]
enum Text {
    Valid,
    Nul,
    TooLong,
    Blank,
}

#[derive(Clone, Copy, Debug)]
enum Uid {
    Plain,
    Nfd,
    ZeroWidth,
    Nul,
}

#[derive(Clone, Copy, Debug)]
enum Pdf {
    Inline,
    Path,
}

#[derive(Clone, Copy, Debug)]
enum ChunkInput {
    Valid(usize),
    NulText,
    DeepMetadata,
    ReservedKey,
}

/// One call by `user` (an index); `owner`/`idx` pick a resume of possibly
/// another user.
#[derive(Clone, Debug)]
enum Step {
    Upsert {
        user: usize,
        uid: Uid,
        email: Text,
    },
    DeleteProfile {
        user: usize,
    },
    Preferences {
        user: usize,
        minutes: u16,
        language: Text,
    },
    CreateResume {
        user: usize,
        title: Text,
        pdf: Pdf,
        content: Text,
    },
    DeleteResume {
        user: usize,
        owner: usize,
        idx: usize,
    },
    UpdateContent {
        user: usize,
        owner: usize,
        idx: usize,
        content: Text,
    },
    ReplaceChunks {
        user: usize,
        owner: usize,
        idx: usize,
        chunks: ChunkInput,
    },
    Search {
        user: usize,
        scope: u8,
        owner: usize,
        idx: usize,
    },
    Read {
        user: usize,
        owner: usize,
        idx: usize,
    },
}

fn text() -> impl Strategy<Value = Text> {
    prop_oneof![
        4 => Just(Text::Valid),
        1 => Just(Text::Nul),
        1 => Just(Text::TooLong),
        1 => Just(Text::Blank),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let user = 0..USERS;
    let idx = 0..3_usize;
    let uid = prop_oneof![
        4 => Just(Uid::Plain),
        2 => Just(Uid::Nfd),
        1 => Just(Uid::ZeroWidth),
        1 => Just(Uid::Nul),
    ];
    let chunk = prop_oneof![
        4 => (0..4_usize).prop_map(ChunkInput::Valid),
        1 => Just(ChunkInput::NulText),
        1 => Just(ChunkInput::DeepMetadata),
        1 => Just(ChunkInput::ReservedKey),
    ];
    let pdf = prop_oneof![Just(Pdf::Inline), Just(Pdf::Path)];
    prop_oneof![
        3 => (user.clone(), uid, text()).prop_map(|(user, uid, email)| Step::Upsert { user, uid, email }),
        1 => user.clone().prop_map(|user| Step::DeleteProfile { user }),
        1 => (user.clone(), 0..300_u16, text())
            .prop_map(|(user, minutes, language)| Step::Preferences { user, minutes, language }),
        3 => (user.clone(), text(), pdf, text())
            .prop_map(|(user, title, pdf, content)| Step::CreateResume { user, title, pdf, content }),
        1 => (user.clone(), user.clone(), idx.clone())
            .prop_map(|(user, owner, idx)| Step::DeleteResume { user, owner, idx }),
        1 => (user.clone(), user.clone(), idx.clone(), text())
            .prop_map(|(user, owner, idx, content)| Step::UpdateContent { user, owner, idx, content }),
        3 => (user.clone(), user.clone(), idx.clone(), chunk)
            .prop_map(|(user, owner, idx, chunks)| Step::ReplaceChunks { user, owner, idx, chunks }),
        2 => (user.clone(), 0..3_u8, user.clone(), idx.clone())
            .prop_map(|(user, scope, owner, idx)| Step::Search { user, scope, owner, idx }),
        2 => (user.clone(), user, idx).prop_map(|(user, owner, idx)| Step::Read { user, owner, idx }),
    ]
}

/// A user in the model: profile id and resumes (id, chunk count), in
/// creation order.
type ModelUser = (Uuid, Vec<(Uuid, usize)>);

/// What the database should hold.
#[derive(Clone, Debug, Default)]
struct Model {
    users: [Option<ModelUser>; USERS],
}

impl Model {
    fn resume(&self, owner: usize, idx: usize) -> Option<Uuid> {
        let (_, resumes) = self.users[owner].as_ref()?;
        resumes.get(idx % resumes.len().max(1)).map(|r| r.0)
    }

    fn id(&self, user: usize) -> Option<Uuid> {
        self.users[user].as_ref().map(|u| u.0)
    }
}

fn spell(t: Text, valid: &str) -> String {
    match t {
        Text::Valid => valid.to_owned(),
        Text::Nul => format!("{valid}\0"),
        Text::TooLong => valid.repeat(2_000_000 / valid.len().max(1) + 1),
        Text::Blank => " \u{200B} ".to_owned(),
    }
}

/// A checksum of every row of every table.
async fn checksum(db: &impl ConnectionTrait) -> String {
    strings(
        db,
        "SELECT coalesce(md5(string_agg(x, '|' ORDER BY x)), '') FROM ( \
           SELECT 'p' || row_to_json(t)::text AS x FROM user_profiles t \
           UNION ALL SELECT 'f' || row_to_json(t)::text FROM user_preferences t \
           UNION ALL SELECT 'r' || row_to_json(t)::text FROM resumes t \
           UNION ALL SELECT 'c' || row_to_json(t)::text FROM resume_chunks t) s",
    )
    .await
    .remove(0)
}

type Check = Result<(), TestCaseError>;

fn leak(what: &str, caller: Option<Uuid>, owner: &str) -> Check {
    let caller = caller.map(|c| c.to_string()).unwrap_or_default();
    prop_assert_eq!(
        owner,
        caller.as_str(),
        "{} returned another user's data",
        what
    );
    Ok(())
}

/// Runs one step; returns whether it succeeded. Checks what it returned.
async fn run_step(
    db: &mockinterview_db::Db,
    model: &mut Model,
    step: &Step,
) -> Result<bool, TestCaseError> {
    let uid = |user: usize, spelling: Uid| match spelling {
        Uid::Plain => UIDS[user].to_owned(),
        Uid::Nfd => UIDS[user].replace('\u{e9}', "e\u{301}"),
        Uid::ZeroWidth => format!("{}\u{200B}", UIDS[user]),
        Uid::Nul => format!("{}\0", UIDS[user]),
    };
    // A caller without a profile uses a random id (unknown user).
    let me = |model: &Model, user: usize| model.id(user).unwrap_or_else(Uuid::new_v4);
    let target = |model: &Model, owner: usize, idx: usize| {
        model.resume(owner, idx).unwrap_or_else(Uuid::new_v4)
    };
    let ok = match *step {
        Step::Upsert {
            user,
            uid: spelling,
            email,
        } => {
            let fb = FirebaseUser {
                uid: uid(user, spelling),
                email: Some(spell(email, &format!("u{user}@example.com"))),
                ..Default::default()
            };
            match profiles::upsert_profile(db, &fb).await {
                Ok(p) => {
                    prop_assert_eq!(&p.firebase_uid, UIDS[user]);
                    if let Some(id) = model.id(user) {
                        prop_assert_eq!(p.id, id, "upsert made a second profile");
                    } else {
                        model.users[user] = Some((p.id, Vec::new()));
                    }
                    true
                }
                Err(_) => false,
            }
        }
        Step::DeleteProfile { user } => {
            let ok = profiles::delete_profile(db, me(model, user)).await.is_ok();
            if ok {
                model.users[user] = None;
            }
            ok
        }
        Step::Preferences {
            user,
            minutes,
            language,
        } => {
            let update = PreferencesUpdate {
                duration_minutes: Some(minutes),
                languages: Some(vec![spell(language, "Rust")]),
                ..Default::default()
            };
            match preferences::update_preferences(db, me(model, user), update).await {
                Ok(p) => {
                    prop_assert_eq!(p.duration_minutes, minutes);
                    true
                }
                Err(_) => false,
            }
        }
        Step::CreateResume {
            user,
            title,
            pdf: kind,
            content,
        } => {
            let pdf = match kind {
                Pdf::Inline => PdfUpload::inline(crate::support::pdf(5)).unwrap(),
                Pdf::Path => PdfUpload::path("s3://bucket/cv.pdf", 1234).unwrap(),
            };
            let new = NewResume {
                user_id: me(model, user),
                title: spell(title, "CV"),
                file_name: "cv.pdf".into(),
                pdf,
                content: Some(spell(content, "text")),
            };
            match resumes::create_resume(db, new).await {
                Ok(r) => {
                    let Some((id, resumes)) = model.users[user].as_mut() else {
                        return Err(TestCaseError::fail("resume created for an unknown user"));
                    };
                    prop_assert_eq!(r.user_id, *id);
                    resumes.push((r.id, 0));
                    true
                }
                Err(_) => false,
            }
        }
        Step::DeleteResume { user, owner, idx } => {
            let resume = target(model, owner, idx);
            let ok = resumes::delete_resume(db, me(model, user), resume)
                .await
                .is_ok();
            if ok {
                prop_assert_eq!(user, owner, "deleted another user's resume");
                if let Some((_, rs)) = model.users[user].as_mut() {
                    rs.retain(|r| r.0 != resume);
                }
            }
            ok
        }
        Step::UpdateContent {
            user,
            owner,
            idx,
            content,
        } => {
            let resume = target(model, owner, idx);
            let ok = resumes::update_resume_content(
                db,
                me(model, user),
                resume,
                &spell(content, "new text"),
            )
            .await
            .is_ok();
            if ok {
                prop_assert_eq!(user, owner, "edited another user's resume");
            }
            ok
        }
        Step::ReplaceChunks {
            user,
            owner,
            idx,
            chunks: input,
        } => {
            let resume = target(model, owner, idx);
            let set: Vec<NewChunk> = match input {
                ChunkInput::Valid(n) => chunks(user as u64 + 1, n),
                ChunkInput::NulText => vec![NewChunk::new("a\0b", embedding(1))],
                ChunkInput::DeepMetadata => {
                    let mut deep = json!(1);
                    for _ in 0..40 {
                        deep = json!([deep]);
                    }
                    vec![NewChunk::new("deep", embedding(1)).with_metadata("pdf", deep)]
                }
                ChunkInput::ReservedKey => {
                    vec![NewChunk::new("x", embedding(1)).with_metadata("user_id", "someone")]
                }
            };
            match crate::support::replace(db, me(model, user), resume, &set).await {
                Ok(ids) => {
                    prop_assert_eq!(user, owner, "replaced another user's chunks");
                    prop_assert_eq!(ids.len(), set.len());
                    if let Some((_, rs)) = model.users[user].as_mut()
                        && let Some(r) = rs.iter_mut().find(|r| r.0 == resume)
                    {
                        r.1 = set.len();
                    }
                    true
                }
                Err(_) => false,
            }
        }
        Step::Search {
            user,
            scope,
            owner,
            idx,
        } => {
            let caller = model.id(user);
            let scope = match scope {
                0 => SearchScope::User(me(model, user)),
                1 => SearchScope::Resume {
                    user_id: me(model, user),
                    resume_id: target(model, owner, idx),
                },
                _ => SearchScope::All,
            };
            match search_chunks(db, &SearchQuery::new(embedding(3), 50, scope)).await {
                Ok(hits) => {
                    if scope != SearchScope::All {
                        for h in &hits {
                            let m = h.metadata.as_ref().unwrap();
                            leak("search_chunks", caller, m["user_id"].as_str().unwrap_or(""))?;
                        }
                    }
                    true
                }
                Err(_) => false,
            }
        }
        Step::Read { user, owner, idx } => {
            let caller = model.id(user);
            let id = me(model, user);
            let resume = target(model, owner, idx);
            if let Ok(list) = resumes::list_resumes(db, id).await {
                for r in &list {
                    leak("list_resumes", caller, &r.user_id.to_string())?;
                }
            }
            if let Ok(r) = resumes::resume(db, id, resume).await {
                leak("resume", caller, &r.summary.user_id.to_string())?;
            }
            if resumes::resume_pdf(db, id, resume).await.is_ok() {
                prop_assert_eq!(user, owner, "resume_pdf of another user's resume");
            }
            for c in chunks::resume_chunks(db, id, resume).await.unwrap() {
                let m = c.metadata.unwrap();
                leak("resume_chunks", caller, m["user_id"].as_str().unwrap_or(""))?;
            }
            match preferences::preferences(db, id).await {
                Ok(_) => prop_assert!(caller.is_some()),
                Err(e) => prop_assert!(matches!(e, Error::NotFound { .. }), "{e:?}"),
            }
            true
        }
    };
    Ok(ok)
}

/// The model against the database: profiles, resumes and chunk counts.
async fn check_model(db: &impl ConnectionTrait, model: &Model) -> Check {
    let profiles = strings(db, "SELECT id::text FROM user_profiles ORDER BY 1").await;
    let mut expected: Vec<String> = model
        .users
        .iter()
        .flatten()
        .map(|u| u.0.to_string())
        .collect();
    expected.sort();
    prop_assert_eq!(profiles, expected);
    let mut resumes: BTreeMap<String, usize> = BTreeMap::new();
    for (id, _) in model.users.iter().flatten().flat_map(|u| u.1.iter()) {
        resumes.insert(id.to_string(), 0);
    }
    let stored = strings(db, "SELECT id::text FROM resumes ORDER BY 1").await;
    prop_assert_eq!(stored, resumes.keys().cloned().collect::<Vec<_>>());
    let counts = strings(
        db,
        "SELECT r || ' ' || n FROM (SELECT metadata->>'resume_id' AS r, count(*) AS n \
         FROM resume_chunks GROUP BY 1) s ORDER BY 1",
    )
    .await;
    let expected: Vec<String> = model
        .users
        .iter()
        .flatten()
        .flat_map(|u| u.1.iter())
        .filter(|r| r.1 > 0)
        .map(|r| format!("{} {}", r.0, r.1))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    prop_assert_eq!(counts, expected, "chunks per resume (no orphans)");
    Ok(())
}

#[test]
fn random_call_sequences_keep_users_apart_and_failed_calls_write_nothing() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut runner = TestRunner::new(config);
    let result = runner.run(&proptest::collection::vec(step(), 1..30), |steps| {
        rt.block_on(async {
            let db = TestDb::new().await;
            let conn = db.conn();
            let mut model = Model::default();
            for (i, step) in steps.iter().enumerate() {
                let before = checksum(conn).await;
                let ok = run_step(conn, &mut model, step).await?;
                if !ok {
                    prop_assert_eq!(
                        checksum(conn).await,
                        before,
                        "step {} failed but changed the database: {:?}",
                        i,
                        step
                    );
                }
                check_model(conn, &model).await?;
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
