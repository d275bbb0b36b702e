//! Phases I–II end to end on a small synthetic dataset: backbone candidates → candidate file →
//! prompts → a scripted LLM through the answer cache → parsed intents (explicit / latent).

use candle_core::Device;
use dmsrec_data::synth::{generate, SynthConfig};
use dmsrec_intent::cache::{generate_cached, AnswerCache};
use dmsrec_intent::candidates::{
    backbone_scorer, coverage, read_candidates, top_k_candidates, write_candidates,
};
use dmsrec_intent::llm::{ChatRequest, Completion, GenerationSettings, LlmBackend};
use dmsrec_intent::parse::{MatchKind, Matcher, ParseOptions, ParseStats};
use dmsrec_intent::prompt::{PromptBuilder, PromptOptions, PromptTemplate};
use dmsrec_models::{ModelConfig, ParamStore, SrGnnConfig};

/// Answers like a chatty model: two numbered candidate titles (the second with an `_id`-like
/// suffix copied from the session format) and one invented intent.
struct Scripted {
    calls: usize,
    prompts: usize,
}

impl LlmBackend for Scripted {
    fn model_id(&self) -> String {
        "scripted-v1".into()
    }

    fn generate(
        &mut self,
        requests: &[ChatRequest],
        _: &GenerationSettings,
    ) -> anyhow::Result<Vec<Completion>> {
        self.calls += 1;
        self.prompts += requests.len();
        Ok(requests
            .iter()
            .map(|r| {
                let c = r.constraint.as_ref().expect("constrained prompts");
                let text =
                    format!("1. {}\n2. {}_{}\n3. a gift for a friend", c.choices[0], c.choices[1], 999_999);
                Completion { text, prompt_tokens: r.user.len() / 4, completion_tokens: 12 }
            })
            .collect())
    }
}

#[test]
fn pipeline_candidates_prompts_cache_parse() {
    let ds = generate(&SynthConfig {
        n_items: 120,
        n_train_sessions: 60,
        n_test_sessions: 30,
        ..Default::default()
    });
    let examples: Vec<_> = ds.test.iter().take(40).cloned().collect();
    assert!(examples.len() >= 10);
    let ps = ParamStore::new(3, &Device::Cpu);
    let model = ModelConfig::Srgnn(SrGnnConfig { n_items: ds.n_items(), dim: 16, step: 1, nonhybrid: false })
        .build(&ps, &Default::default())
        .unwrap();

    // Phase I: top-K candidates, stored and read back.
    let dir = tempfile::tempdir().unwrap();
    let cand_path = dir.path().join("test_candidates.tsv");
    let cands = top_k_candidates(&mut backbone_scorer(model.as_ref()), &examples, 12, 7).unwrap();
    write_candidates(&cand_path, &cands).unwrap();
    let cands = read_candidates(&cand_path).unwrap();
    assert_eq!(cands.len(), examples.len());
    let cov = coverage(&examples, &cands).unwrap();
    assert!((0.0..=1.0).contains(&cov.target) && (0.0..=1.0).contains(&cov.last_item));

    // Phase II: prompts.
    let opts = PromptOptions { k: 10, last_n: Some(5), max_intents: 3, ..Default::default() };
    let builder = PromptBuilder::new(PromptTemplate::paper(), opts).unwrap();
    let prompts = builder.render_all(&ds.catalog, &examples, &cands).unwrap();
    for (p, e) in prompts.iter().zip(&examples) {
        assert_eq!(p.candidates.len(), 10);
        assert_eq!(p.session.len(), e.prefix.len().min(5));
        assert!(p.request.user.starts_with("The order in which users click on items is as follows:\n1. "));
        assert!(p.request.user.contains("\nCandidate item set:\n1. "));
        let last = e.prefix.last().unwrap();
        assert!(p.request.user.contains(&format!("_{last}\nCandidate item set:")));
    }

    // The LLM, through the cache: a second run asks for nothing.
    let requests: Vec<ChatRequest> = prompts.iter().map(|p| p.request.clone()).collect();
    let settings = GenerationSettings::default();
    let cache_path = dir.path().join("answers.sqlite");
    let mut llm = Scripted { calls: 0, prompts: 0 };
    let first = {
        let mut cache = AnswerCache::open(&cache_path).unwrap();
        generate_cached(&mut llm, &mut cache, &requests, &settings, 8).unwrap()
    };
    assert_eq!((first.hits, first.generated), (0, requests.len()));
    let mut cache = AnswerCache::open(&cache_path).unwrap();
    let second = generate_cached(&mut llm, &mut cache, &requests, &settings, 8).unwrap();
    assert_eq!((second.hits, second.generated), (requests.len(), 0));
    assert_eq!(second.completions, first.completions);
    assert_eq!(llm.prompts, requests.len());

    // Eq. 5: parse and split.
    let mut stats = ParseStats::default();
    for (p, c) in prompts.iter().zip(&second.completions) {
        let parsed = Matcher::new(&p.candidates, &p.session, ParseOptions::default()).parse(&c.text);
        assert_eq!(parsed.intents.len(), 3, "{:?}", c.text);
        let choices = &p.request.constraint.as_ref().unwrap().choices;
        assert_eq!(parsed.intents[0].text, choices[0]);
        assert_eq!(parsed.intents[1].text, choices[1]);
        assert_eq!(parsed.intents[2].kind, MatchKind::Free);
        for i in &parsed.intents[..2] {
            assert_eq!(i.kind, MatchKind::Exact);
            let id = i.item.unwrap();
            assert!(p.candidates.iter().any(|(c, _)| *c == id));
            let in_session = p.session.iter().any(|(s, t)| *s == id || *t == i.text);
            assert_eq!(i.explicit, in_session, "Eq. 5 for {:?}", i.text);
        }
        stats.add(&parsed);
    }
    assert_eq!(stats.answers, prompts.len());
    assert_eq!(stats.parseable, prompts.len());
    assert_eq!((stats.exact, stats.fuzzy, stats.free), (2 * prompts.len(), 0, prompts.len()));
    assert!((stats.mean_intents_per_answer() - 3.0).abs() < 1e-12);
    eprintln!("coverage {cov:?}; {}", stats.summary());
}
