//! Deterministic synthetic corpus: users, resumes, chunk texts and clustered
//! 768-dimension embeddings, plus queries and exact ground truth.
//!
//! Embeddings are a mixture on the unit sphere, shaped like real text
//! embeddings (which are anisotropic and clustered):
//!
//! `normalize(0.6·g + c_topic + 0.6·s_subtopic + noise)`
//!
//! with `g` one shared direction (unrelated chunks still have cosine ≈ 0.2,
//! as with real models), a few hundred topic centroids `c`, 8 subtopics per
//! topic, and Gaussian noise whose scale varies per chunk (some chunks are
//! on-topic, some wander). Same subtopic ≈ 0.85 cosine, same topic ≈ 0.67.
//! Topic popularity is skewed (a few topics are common), each user writes
//! about 2–5 topics and has 20–80 chunks. Queries are drawn the same way.
//!
//! The PRNG is hand-written (SplitMix64 seeding xoshiro256++, Box–Muller
//! normals) rather than `rand`: `rand`'s `StdRng` is documented as not
//! value-stable across releases, and the corpus must be the same for every
//! run and every future build, with no new dependency.

use std::time::Instant;

use uuid::Uuid;

/// Embedding dimensions (`vector(768)`).
pub const DIMS: usize = 768;
const SUBTOPICS: usize = 8;
const GLOBAL_WEIGHT: f32 = 0.6;
const SUBTOPIC_WEIGHT: f32 = 0.6;
/// Norm of the noise vector for a typical chunk.
const NOISE_NORM: f32 = 0.55;

/// xoshiro256++ seeded through SplitMix64.
#[derive(Clone)]
pub struct Rng {
    s: [u64; 4],
    spare: Option<f32>,
}

impl Rng {
    /// A generator for `seed` and a stream label (independent streams).
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut x = seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Self {
            s: [next(), next(), next(), next()],
            spare: None,
        }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// Standard normal (Box–Muller, both values used).
    pub fn normal(&mut self) -> f32 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let u1 = self.f64().max(f64::MIN_POSITIVE);
        let u2 = self.f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some((r * s) as f32);
        (r * c) as f32
    }

    /// A random 128-bit UUID with v4 bits set.
    pub fn uuid(&mut self) -> Uuid {
        let hi = self.next_u64().to_be_bytes();
        let lo = self.next_u64().to_be_bytes();
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&hi);
        b[8..].copy_from_slice(&lo);
        uuid::Builder::from_random_bytes(b).into_uuid()
    }
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    for x in v {
        *x /= n;
    }
}

fn random_unit(rng: &mut Rng) -> Vec<f32> {
    let mut v: Vec<f32> = (0..DIMS).map(|_| rng.normal()).collect();
    normalize(&mut v);
    v
}

/// The mixture the embeddings are drawn from.
pub struct Topics {
    global: Vec<f32>,
    centroids: Vec<Vec<f32>>,
    subtopics: Vec<Vec<Vec<f32>>>,
}

impl Topics {
    fn new(count: usize, rng: &mut Rng) -> Self {
        let global = random_unit(rng);
        let centroids: Vec<_> = (0..count).map(|_| random_unit(rng)).collect();
        let subtopics = (0..count)
            .map(|_| (0..SUBTOPICS).map(|_| random_unit(rng)).collect())
            .collect();
        Self {
            global,
            centroids,
            subtopics,
        }
    }

    /// A topic index, skewed towards low indexes (popular topics).
    fn popular_topic(&self, rng: &mut Rng) -> usize {
        let u = rng.f64().powf(1.6);
        ((u * self.centroids.len() as f64) as usize).min(self.centroids.len() - 1)
    }

    /// One embedding from topic `t` (random subtopic), written into `out`.
    fn draw(&self, t: usize, rng: &mut Rng, out: &mut [f32]) {
        let s = &self.subtopics[t][rng.range(0, SUBTOPICS - 1)];
        let c = &self.centroids[t];
        let sigma = NOISE_NORM * (0.7 + 0.6 * rng.f64() as f32) / (DIMS as f32).sqrt();
        for i in 0..DIMS {
            out[i] = GLOBAL_WEIGHT * self.global[i]
                + c[i]
                + SUBTOPIC_WEIGHT * s[i]
                + sigma * rng.normal();
        }
        normalize(out);
    }
}

/// A user with one resume and its chunks `start..start+len` of the corpus.
#[derive(Clone, Debug)]
pub struct User {
    /// `user_profiles.id`.
    pub id: Uuid,
    /// Firebase uid.
    pub uid: String,
    /// `resumes.id`.
    pub resume_id: Uuid,
    /// First chunk index.
    pub start: usize,
    /// Number of chunks (20–80).
    pub len: usize,
    /// Topics this user writes about.
    pub topics: Vec<usize>,
}

impl User {
    /// Chunk indexes of this user.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.len
    }
}

/// Chunk rows in corpus order (users' chunks contiguous).
pub struct Corpus {
    /// Row-major `n × DIMS` unit vectors.
    pub vectors: Vec<f32>,
    /// Chunk texts.
    pub texts: Vec<String>,
    /// Extra metadata per chunk: (section, page).
    pub extras: Vec<(&'static str, i64)>,
    /// Pre-generated chunk ids (used by the raw baselines).
    pub ids: Vec<Uuid>,
    /// Users, in order.
    pub users: Vec<User>,
    /// The mixture (to draw queries and new users).
    pub topics: Topics,
    seed: u64,
}

/// Sections a chunk can come from (the metadata `section` key).
pub const SECTIONS: [&str; 5] = ["summary", "experience", "projects", "skills", "education"];

const ROLES: [&str; 12] = [
    "Backend engineer",
    "Data scientist",
    "Site reliability engineer",
    "Frontend developer",
    "Product manager",
    "Machine learning engineer",
    "Security analyst",
    "Mobile developer",
    "Database administrator",
    "Engineering manager",
    "QA automation engineer",
    "Cloud architect",
];
const VERBS: [&str; 10] = [
    "Built",
    "Led",
    "Designed",
    "Migrated",
    "Optimized",
    "Shipped",
    "Maintained",
    "Scaled",
    "Automated",
    "Mentored",
];
const THINGS: [&str; 12] = [
    "a payments API serving 20k requests per second",
    "the search ranking pipeline",
    "a Kubernetes platform for 40 services",
    "the customer analytics warehouse",
    "an on-call rotation and incident process",
    "a React design system",
    "a feature store for model training",
    "the PostgreSQL fleet and its backups",
    "a mobile checkout flow",
    "CI pipelines cutting build time by half",
    "a team of six engineers",
    "fraud detection models",
];
const TECH: [&str; 12] = [
    "Rust",
    "Go",
    "Python",
    "TypeScript",
    "Kotlin",
    "Java",
    "PostgreSQL",
    "Kafka",
    "Terraform",
    "PyTorch",
    "AWS",
    "GCP",
];

fn chunk_text(rng: &mut Rng, section: &str) -> String {
    let pick = |rng: &mut Rng, xs: &[&str]| xs[rng.range(0, xs.len() - 1)].to_owned();
    match section {
        "skills" => format!(
            "Skills: {}, {}, {}, {}; comfortable with {} and {}.",
            pick(rng, &TECH),
            pick(rng, &TECH),
            pick(rng, &TECH),
            pick(rng, &TECH),
            pick(rng, &THINGS),
            pick(rng, &TECH)
        ),
        "education" => format!(
            "Education: B.Sc. in computer science ({}), thesis on {} with {}.",
            2005 + rng.range(0, 18),
            pick(rng, &THINGS),
            pick(rng, &TECH)
        ),
        _ => format!(
            "{} at company {} ({}–{}). {} {} using {} and {}; {} {}.",
            pick(rng, &ROLES),
            rng.range(1, 999),
            2010 + rng.range(0, 8),
            2018 + rng.range(0, 7),
            pick(rng, &VERBS),
            pick(rng, &THINGS),
            pick(rng, &TECH),
            pick(rng, &TECH),
            pick(rng, &VERBS).to_lowercase(),
            pick(rng, &THINGS)
        ),
    }
}

impl Corpus {
    /// Generates about `target_chunks` chunks (whole users) with `topic_count`
    /// topics, printing progress.
    pub fn generate(target_chunks: usize, topic_count: usize, seed: u64) -> Self {
        let started = Instant::now();
        let mut rng = Rng::new(seed, 1);
        let topics = Topics::new(topic_count, &mut rng);
        let mut users = Vec::new();
        let mut n = 0;
        while n < target_chunks {
            let len = rng.range(20, 80).min(target_chunks - n).max(1);
            let topic_n = rng.range(2, 5);
            let user_topics = (0..topic_n)
                .map(|_| topics.popular_topic(&mut rng))
                .collect();
            let i = users.len();
            users.push(User {
                id: rng.uuid(),
                uid: format!("bench-user-{seed}-{i}"),
                resume_id: rng.uuid(),
                start: n,
                len,
                topics: user_topics,
            });
            n += len;
        }
        let mut vectors = vec![0f32; n * DIMS];
        // Vectors in parallel over 2 threads: one RNG stream per user, so the
        // result does not depend on the thread split.
        let half = users.len() / 2;
        let split_at = users.get(half).map_or(n, |u| u.start) * DIMS;
        let (a, b) = vectors.split_at_mut(split_at);
        let progress = std::sync::atomic::AtomicUsize::new(0);
        let fill = |users: &[User], buf: &mut [f32], offset: usize| {
            for u in users {
                let mut r = Rng::new(seed, 1_000_000 + u.start as u64);
                for c in u.range() {
                    let t = u.topics[r.range(0, u.topics.len() - 1)];
                    let at = (c - offset) * DIMS;
                    topics.draw(t, &mut r, &mut buf[at..at + DIMS]);
                }
                let done = progress.fetch_add(u.len, std::sync::atomic::Ordering::Relaxed) + u.len;
                let step = (n / 10).max(1);
                if done / step != (done - u.len) / step {
                    crate::progress(&format!(
                        "generating embeddings: {done}/{n} ({:.1}s)",
                        started.elapsed().as_secs_f64()
                    ));
                }
            }
        };
        std::thread::scope(|s| {
            s.spawn(|| fill(&users[..half], a, 0));
            fill(&users[half..], b, users.get(half).map_or(n, |u| u.start));
        });
        let mut texts = Vec::with_capacity(n);
        let mut extras = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        let mut trng = Rng::new(seed, 2);
        for u in &users {
            for j in 0..u.len {
                let section = SECTIONS[trng.range(0, SECTIONS.len() - 1)];
                texts.push(chunk_text(&mut trng, section));
                extras.push((section, 1 + (j / 25) as i64));
                ids.push(trng.uuid());
            }
        }
        crate::progress(&format!(
            "generated {n} chunks for {} users on {topic_count} topics in {:.1}s",
            users.len(),
            started.elapsed().as_secs_f64()
        ));
        Self {
            vectors,
            texts,
            extras,
            ids,
            users,
            topics,
            seed,
        }
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// The embedding of chunk `i`.
    pub fn vector(&self, i: usize) -> &[f32] {
        &self.vectors[i * DIMS..(i + 1) * DIMS]
    }

    /// Extra users (not in the corpus) with `lens[i]` chunks each, for
    /// steady-state uploads.
    pub fn new_users(&self, lens: &[usize], stream: u64) -> Vec<ExtraUser> {
        let mut rng = Rng::new(self.seed, 3_000_000 + stream);
        lens.iter()
            .enumerate()
            .map(|(i, &len)| {
                let topic_n = rng.range(2, 5);
                let topics: Vec<usize> = (0..topic_n)
                    .map(|_| self.topics.popular_topic(&mut rng))
                    .collect();
                let mut vectors = vec![0f32; len * DIMS];
                let mut chunks = Vec::with_capacity(len);
                for j in 0..len {
                    let t = topics[rng.range(0, topics.len() - 1)];
                    self.topics
                        .draw(t, &mut rng, &mut vectors[j * DIMS..(j + 1) * DIMS]);
                    let section = SECTIONS[rng.range(0, SECTIONS.len() - 1)];
                    chunks.push((chunk_text(&mut rng, section), section, 1 + (j / 25) as i64));
                }
                ExtraUser {
                    uid: format!("bench-steady-{}-{stream}-{i}", self.seed),
                    chunks,
                    vectors,
                }
            })
            .collect()
    }

    /// `count` queries drawn like the data, from popular topics.
    pub fn global_queries(&self, count: usize) -> Vec<Vec<f32>> {
        let mut rng = Rng::new(self.seed, 4);
        (0..count)
            .map(|_| {
                let t = self.topics.popular_topic(&mut rng);
                let mut q = vec![0f32; DIMS];
                self.topics.draw(t, &mut rng, &mut q);
                q
            })
            .collect()
    }

    /// `count` scoped queries: (user index, query drawn from one of the
    /// user's topics).
    pub fn scoped_queries(&self, count: usize) -> Vec<(usize, Vec<f32>)> {
        let mut rng = Rng::new(self.seed, 5);
        (0..count)
            .map(|_| {
                let u = rng.range(0, self.users.len() - 1);
                let user = &self.users[u];
                let t = user.topics[rng.range(0, user.topics.len() - 1)];
                let mut q = vec![0f32; DIMS];
                self.topics.draw(t, &mut rng, &mut q);
                (u, q)
            })
            .collect()
    }
}

/// A user for steady-state uploads.
pub struct ExtraUser {
    /// Firebase uid.
    pub uid: String,
    /// (text, section, page) per chunk.
    pub chunks: Vec<(String, &'static str, i64)>,
    /// Row-major embeddings.
    pub vectors: Vec<f32>,
}

/// Dot product (= cosine similarity for unit vectors), 8 accumulators so the
/// compiler vectorizes it.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum()
}

/// Exact top-`k` (index, similarity) of `query` among `candidates`, best first.
pub fn exact_top_k(
    corpus: &Corpus,
    query: &[f32],
    candidates: impl Iterator<Item = usize>,
    k: usize,
) -> Vec<(usize, f32)> {
    let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
    for i in candidates {
        let s = dot(query, corpus.vector(i));
        if best.len() < k || s > best[best.len() - 1].1 {
            let pos = best.partition_point(|&(_, b)| b >= s);
            best.insert(pos, (i, s));
            best.truncate(k);
        }
    }
    best
}

/// Exact top-`k` over the whole corpus for every query, on 2 threads.
pub fn ground_truth(corpus: &Corpus, queries: &[Vec<f32>], k: usize) -> Vec<Vec<(usize, f32)>> {
    let started = Instant::now();
    let n = corpus.len();
    let half = queries.len() / 2;
    let (qa, qb) = queries.split_at(half);
    let run = |qs: &[Vec<f32>]| -> Vec<Vec<(usize, f32)>> {
        qs.iter().map(|q| exact_top_k(corpus, q, 0..n, k)).collect()
    };
    let (mut ra, rb) = std::thread::scope(|s| {
        let h = s.spawn(|| run(qa));
        let rb = run(qb);
        (h.join().expect("ground-truth thread"), rb)
    });
    ra.extend(rb);
    crate::progress(&format!(
        "exact ground truth: {} queries × {n} chunks in {:.1}s",
        queries.len(),
        started.elapsed().as_secs_f64()
    ));
    ra
}

/// Recall of `returned` (corpus indexes) against the exact top-k `truth`.
/// A returned chunk counts when its exact similarity is at least the k-th
/// true similarity minus 1e-5 (float rounding in pgvector vs here; true ties
/// are far rarer than that at these similarity spreads).
pub fn recall(corpus: &Corpus, query: &[f32], returned: &[usize], truth: &[(usize, f32)]) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    let kth = truth[truth.len() - 1].1;
    let hits = returned
        .iter()
        .take(truth.len())
        .filter(|&&i| dot(query, corpus.vector(i)) >= kth - 1e-5)
        .count();
    hits as f64 / truth.len() as f64
}
