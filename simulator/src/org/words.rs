//! Words for generated text: company and person names, addresses, paragraphs.

use super::rng::Rng;

pub(super) fn paragraph(rng: &mut Rng) -> String {
    let sentences = 1 + rng.below(3);
    let mut text = String::new();
    for s in 0..sentences {
        if s > 0 {
            text.push_str(if rng.chance(300) { "\n" } else { " " });
        }
        let words = 4 + rng.below(10);
        let sentence: Vec<&str> = (0..words).map(|_| rng.pick(WORDS)).collect();
        let mut sentence = sentence.join(" ");
        if rng.chance(150) {
            sentence = format!("\"{sentence}\", they said");
        }
        if rng.chance(100) {
            sentence.push_str(", naïve café façade — ünïcödé");
        }
        text.push_str(&sentence);
        text.push('.');
    }
    // About one paragraph in a hundred has a NUL character pasted into it, as real orgs' text
    // does (several clients' issues: "line contains NUL"). Decided by the text, not by another
    // draw, so every other value of the row stays as it was.
    if text.len().is_multiple_of(97) {
        let at = text.find(' ').unwrap_or(text.len());
        text.insert(at, '\0');
    }
    text
}

pub(super) const COMPANY_WORDS: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Wonka",
    "Hooli",
    "Vehement",
    "Massive",
    "Soylent",
    "Cyberdyne",
    "Tyrell",
    "Aperture",
    "Oscorp",
    "Gringotts",
    "Monarch",
    "Dunder",
    "Pied Piper",
    "Blue Sun",
];
pub(super) const COMPANY_SUFFIXES: &[&str] = &[
    "Inc.",
    "LLC",
    "Ltd",
    "GmbH",
    "Corp.",
    "& Sons",
    "Group",
    "Holdings",
    "S.A.",
    "Partners, LLP",
];
pub(super) const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "Edsger",
    "Radia",
    "Tim",
    "Hedy",
    "John",
    "Katherine",
    "Niklaus",
    "Sophie",
    "José",
    "Zoë",
    "Ólafur",
];
pub(super) const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Berners-Lee",
    "Lamarr",
    "McCarthy",
    "Johnson",
    "Wirth",
    "Wilson",
    "García",
    "O'Neil",
    "Müller",
];
pub(super) const STREETS: &[&str] = &[
    "Main St",
    "Market Street",
    "Broadway",
    "Elm Avenue",
    "Mission St",
    "Oak Lane",
    "Pine Road",
    "1st Ave",
    "Sunset Blvd",
    "Harbour Way",
];
pub(super) const CITIES: &[&str] = &[
    "San Francisco",
    "New York",
    "Austin",
    "Chicago",
    "Seattle",
    "London",
    "Paris",
    "Berlin",
    "Tokyo",
    "São Paulo",
    "Zürich",
    "Montréal",
];
pub(super) const STATES: &[&str] = &["CA", "NY", "TX", "IL", "WA", "MA", "CO", "GA", "OR", "FL"];
pub(super) const COUNTRIES: &[&str] = &[
    "United States",
    "United Kingdom",
    "France",
    "Germany",
    "Japan",
    "Brazil",
    "Switzerland",
    "Canada",
];
pub(super) const WORDS: &[&str] = &[
    "quarterly",
    "renewal",
    "pipeline",
    "enterprise",
    "platform",
    "migration",
    "support",
    "contract",
    "upgrade",
    "license",
    "integration",
    "rollout",
    "pilot",
    "expansion",
    "onboarding",
    "escalation",
    "invoice",
    "shipment",
    "warehouse",
    "forecast",
    "budget",
    "review",
    "priority",
    "customer",
    "partner",
    "regional",
    "global",
    "annual",
    "strategic",
    "follow-up",
];
