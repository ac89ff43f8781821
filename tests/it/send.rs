//! Every data function returns a `Send` future for every kind of store, so
//! it can run in `tokio::spawn` and in axum / actix handlers.

use mockinterview_db::chunks::{self, ResumeChunks};
use mockinterview_db::health::readiness;
use mockinterview_db::preferences::{self, PreferencesUpdate};
use mockinterview_db::profiles::{self, FirebaseUser};
use mockinterview_db::resumes::{self, NewResume};
use mockinterview_db::{Db, SearchQuery, Session, Store};
use uuid::Uuid;

fn send<T: Send>(_: T) {}

#[allow(clippy::too_many_arguments)]
fn every_call_is_send<S: Store>(
    db: &S,
    user: &FirebaseUser,
    new: NewResume,
    query: &SearchQuery,
    sets: &[ResumeChunks<'_>],
    id: Uuid,
) {
    send(profiles::upsert_profile(db, user));
    send(profiles::create_profile(db, user));
    send(profiles::profile_by_uid(db, "uid"));
    send(profiles::profile_by_id(db, id));
    send(profiles::delete_profile(db, id));
    send(profiles::clear_profile_fields(db, id, &[]));
    send(preferences::preferences(db, id));
    send(preferences::update_preferences(
        db,
        id,
        PreferencesUpdate::default(),
    ));
    send(resumes::create_resume(db, new));
    send(resumes::list_resumes(db, id));
    send(resumes::resume(db, id, id));
    send(resumes::resume_pdf(db, id, id));
    send(resumes::update_resume_content(db, id, id, "text"));
    send(resumes::delete_resume(db, id, id));
    send(crate::support::replace(db, id, id, &[]));
    send(mockinterview_db::chunks::replace_chunks(
        db,
        sets,
        mockinterview_db::chunks::Indexing::Now,
    ));
    send(chunks::resume_chunks(db, id, id));
    send(chunks::search_chunks(db, query));
    send(readiness(db));
}

#[test]
fn data_function_futures_are_send() {
    // Instantiated for every store type; the check is at compile time.
    let _ = every_call_is_send::<Db>;
    let _ = every_call_is_send::<Session>;
    let _ = every_call_is_send::<mockinterview_db::Primary<'static>>;
    let _ = every_call_is_send::<mockinterview_db::Transaction>;
}
