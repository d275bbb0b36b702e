//! A small, deterministic synthetic e-commerce dataset for `dmsrec demo` (no download needed).
//!
//! **Catalog.** Eleven categories (Outdoor, Sports, Kitchen, Pantry, Beauty, Electronics, Home
//! Office, Toys, Books, Garden, Travel), each with product kinds ("Tent", "Headlamp", "Stand
//! Mixer" …) and invented brands. An item is a brand × variant × attribute of one kind, e.g.
//! "Northpeak 2-Person Dome Tent, Green" or "Sourdough at Home — Baking Book, Hardcover
//! (Foxglove Press)". Titles are unique; `fields` are `category`, `brand` and `kind`.
//!
//! **Sessions.** Every session follows a hidden shopping *mission* ("planning a camping trip":
//! tent → sleeping bag → sleeping pad → headlamp → stove …), some spanning categories; some
//! sessions move on to a second mission. A mission's stages are visited mostly in order (lead
//! item first, then accessories, optional stages skipped, neighbours sometimes swapped); within a
//! stage the shopper may compare alternatives of the same kind and return to a favourite (repeat
//! clicks); a shopper may stick to the first brand they click; a little noise (globally popular
//! or random items) is mixed in.
//! Items are Zipf-popular within their kind and missions Zipf-popular overall, with a seasonal
//! drift over the synthetic year the sessions span. Sessions are ordered by time: the first
//! `n_train_sessions` are training sessions, the rest test sessions, both turned into examples
//! with prefix augmentation. Test sessions only use items seen in training.
//!
//! Everything is drawn from one `ChaCha8Rng` seeded with [`SynthConfig::seed`]: the same config
//! always gives the same dataset. [`generate_with_intents`] also returns each session's missions
//! as intent phrases ("planning a camping trip"), the ground truth for intent inference.

use crate::{sessions_to_examples, Catalog, Dataset, ItemInfo};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// The dataset name of [`generate`].
pub const NAME: &str = "synthetic-shop";

/// Size and behaviour of the synthetic dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SynthConfig {
    /// Catalog size (item ids `1..=n_items`).
    pub n_items: usize,
    /// Sessions of the training split (the earliest ones).
    pub n_train_sessions: usize,
    /// Sessions of the test split (the latest ones).
    pub n_test_sessions: usize,
    pub seed: u64,
    /// Target mean session length (clicks); actual lengths are 2..=`max_session_len`, and a
    /// session may end earlier when its mission is exhausted.
    pub mean_session_len: f64,
    pub max_session_len: usize,
    /// Probability of a noise click (a popular or random item) after each visited product kind.
    pub noise: f64,
    /// Probability that a shopper sticks to the brand of their first click.
    pub brand_loyalty: f64,
    /// Probability of comparing (clicking) another item of the kind just viewed.
    pub compare: f64,
    /// Probability that a session moves on to a second mission after its first one.
    pub mission_switch: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            n_items: 600,
            n_train_sessions: 6000,
            n_test_sessions: 800,
            seed: 2024,
            mean_session_len: 6.5,
            max_session_len: 15,
            noise: 0.06,
            brand_loyalty: 0.45,
            compare: 0.35,
            mission_switch: 0.2,
        }
    }
}

/// The generated dataset plus the hidden mission of every session.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub dataset: Dataset,
    /// Intents of each training session, parallel to `dataset.train_sequences`: its mission,
    /// followed by a second one when the shopper moved on to another mission.
    pub train_intents: Vec<Vec<&'static str>>,
    /// The full test sessions (their prefixes and targets are `dataset.test`, in this order;
    /// sessions shorter than 2 give no examples).
    pub test_sessions: Vec<Vec<u32>>,
    /// Intents of each test session, parallel to `test_sessions`.
    pub test_intents: Vec<Vec<&'static str>>,
}

/// Generates the dataset of `cfg`.
pub fn generate(cfg: &SynthConfig) -> Dataset {
    generate_with_intents(cfg).dataset
}

/// The intent phrases of all missions, in a fixed order.
pub fn intents() -> Vec<&'static str> {
    MISSIONS.iter().map(|m| m.intent).collect()
}

// ---------------------------------------------------------------------------------------------
// Catalog definition
// ---------------------------------------------------------------------------------------------

struct CategoryDef {
    name: &'static str,
    brands: &'static [&'static str],
}

const OUTDOOR: usize = 0;
const SPORTS: usize = 1;
const KITCHEN: usize = 2;
const PANTRY: usize = 3;
const BEAUTY: usize = 4;
const ELECTRONICS: usize = 5;
const OFFICE: usize = 6;
const TOYS: usize = 7;
const BOOKS: usize = 8;
const GARDEN: usize = 9;
const TRAVEL: usize = 10;

const CATEGORIES: &[CategoryDef] = &[
    CategoryDef {
        name: "Outdoor",
        brands: &["Northpeak", "Trailwise", "Embercamp", "Larchwood", "Ridgeway Gear"],
    },
    CategoryDef { name: "Sports", brands: &["Stridewell", "Corefit", "Pacelane", "Ironvale", "Kinetiq"] },
    CategoryDef { name: "Kitchen", brands: &["Hearthly", "Copperleaf", "Panterra", "Oakmill", "Saltgrove"] },
    CategoryDef { name: "Pantry", brands: &["Millbrook", "Greenfold", "Sunhollow", "Wildacre"] },
    CategoryDef { name: "Beauty", brands: &["Rosalune", "Aurelle", "Dewbloom", "Linnea", "Saltmoss"] },
    CategoryDef { name: "Electronics", brands: &["Voltix", "Lumina", "Pixelon", "Nexora", "Wrenwave"] },
    CategoryDef { name: "Home Office", brands: &["Deskwell", "Ergonova", "Quillmark", "Stacksmith"] },
    CategoryDef { name: "Toys", brands: &["Tinkerbee", "Puddlejump", "Brightblock", "Marblewood"] },
    CategoryDef { name: "Books", brands: &["Foxglove Press", "Lanternhouse", "Bramble Books"] },
    CategoryDef { name: "Garden", brands: &["Fernhollow", "Rootwell", "Sproutly", "Mossgate"] },
    CategoryDef { name: "Travel", brands: &["Roamly", "Jetwell", "Atlas & Oak", "Globetrot"] },
];

/// One product kind. Titles are "{brand} {variant} {noun}, {attr}", or for books
/// "{variant} — {noun}, {attr} ({brand})"; `attrs` may be empty.
struct KindDef {
    noun: &'static str,
    cat: usize,
    variants: &'static [&'static str],
    attrs: &'static [&'static str],
}

const fn k(
    noun: &'static str,
    cat: usize,
    variants: &'static [&'static str],
    attrs: &'static [&'static str],
) -> KindDef {
    KindDef { noun, cat, variants, attrs }
}

const COLOURS_OUT: &[&str] = &["Green", "Orange", "Grey"];
const ML_SMALL: &[&str] = &["150 ml", "250 ml"];
const ML_HAIR: &[&str] = &["300 ml", "500 ml"];
const BLACK_WHITE: &[&str] = &["Black", "White"];
const BLACK_GREY: &[&str] = &["Black", "Grey"];
const PAPERBACK: &[&str] = &["Paperback"];
const BOOK_FORMATS: &[&str] = &["Hardcover", "Paperback"];

#[rustfmt::skip]
const KINDS: &[KindDef] = &[
    // Outdoor
    k("Tent", OUTDOOR, &["2-Person Dome", "4-Person Cabin", "Ultralight 1-Person", "3-Season Backpacking"], COLOURS_OUT),
    k("Sleeping Bag", OUTDOOR, &["Mummy", "Rectangular", "Down 0°C", "Synthetic 5°C"], &["Regular", "Long"]),
    k("Sleeping Pad", OUTDOOR, &["Self-Inflating", "Closed-Cell Foam", "Insulated Air"], &["Regular", "Wide"]),
    k("Headlamp", OUTDOOR, &["Rechargeable", "Waterproof", "Compact"], &["200 lm", "300 lm", "450 lm"]),
    k("Camp Stove", OUTDOOR, &["Single-Burner Gas", "Two-Burner", "Compact Backpacking"], &[]),
    k("Water Filter", OUTDOOR, &["Squeeze", "Gravity", "Pump"], &["1 L", "2 L"]),
    k("Hiking Backpack", OUTDOOR, &["35 L Daypack", "50 L Trekking", "65 L Expedition"], &["Blue", "Black", "Red"]),
    k("Trekking Poles", OUTDOOR, &["Carbon", "Aluminium Folding", "Cork-Grip"], &[]),
    k("Camping Chair", OUTDOOR, &["Folding", "Low Beach", "Ultralight"], &["Green", "Navy", "Sand"]),
    k("Cooler Bag", OUTDOOR, &["Soft-Sided", "Rolling"], &["20 L", "30 L"]),
    // Sports
    k("Running Shoes", SPORTS, &["Road", "Trail", "Cushioned", "Lightweight Racing"], &["EU 39", "EU 41", "EU 43", "EU 45"]),
    k("Running Shorts", SPORTS, &["Lined", "2-in-1"], &["S", "M", "L"]),
    k("Sports Socks", SPORTS, &["Cushioned", "Compression", "No-Show"], &["3-Pack", "6-Pack"]),
    k("Yoga Mat", SPORTS, &["Non-Slip", "Extra Thick", "Travel"], &["Purple", "Teal", "Black"]),
    k("Dumbbell Set", SPORTS, &["Adjustable", "Neoprene", "Hex Rubber"], &["2 x 3 kg", "2 x 5 kg", "2 x 10 kg"]),
    k("Resistance Bands", SPORTS, &["Loop", "Tube", "Fabric"], &["Light", "Medium", "Heavy"]),
    k("Foam Roller", SPORTS, &["Textured", "Smooth", "Vibrating"], &["30 cm", "45 cm"]),
    k("Water Bottle", SPORTS, &["Insulated Steel", "Squeeze", "Tritan"], &["500 ml", "750 ml", "1 L"]),
    k("Gym Bag", SPORTS, &["Duffel", "Backpack-Style"], &["Black", "Grey", "Navy"]),
    // Kitchen
    k("Stand Mixer", KITCHEN, &["5 L Tilt-Head", "Compact 3.5 L", "Bowl-Lift 6 L"], &["Red", "Cream", "Silver"]),
    k("Mixing Bowl Set", KITCHEN, &["Stainless Steel", "Glass Nesting", "Melamine"], &["3-Piece", "5-Piece"]),
    k("Baking Sheet", KITCHEN, &["Non-Stick", "Aluminium", "Perforated"], &["Half Size", "Quarter Size"]),
    k("Loaf Pan", KITCHEN, &["Non-Stick", "Cast Iron", "Ceramic"], &["900 g", "450 g"]),
    k("Kitchen Scale", KITCHEN, &["Digital", "Slim Digital", "High-Precision"], &[]),
    k("Chef's Knife", KITCHEN, &["8-Inch", "Santoku 7-Inch", "Damascus 8-Inch"], &[]),
    k("Cutting Board", KITCHEN, &["Bamboo", "End-Grain Walnut", "Plastic"], &["Large", "Medium"]),
    k("Frying Pan", KITCHEN, &["Cast Iron", "Non-Stick", "Stainless Steel"], &["24 cm", "28 cm"]),
    k("Stock Pot", KITCHEN, &["Stainless Steel", "Enamelled"], &["5 L", "8 L"]),
    k("Spatula Set", KITCHEN, &["Silicone", "Wooden"], &["3-Piece", "5-Piece"]),
    k("Espresso Machine", KITCHEN, &["Manual Lever", "Pump", "Bean-to-Cup"], &["Black", "Silver"]),
    k("Coffee Grinder", KITCHEN, &["Conical Burr", "Flat Burr", "Hand"], &[]),
    k("Milk Frother", KITCHEN, &["Electric", "Handheld"], BLACK_WHITE),
    k("French Press", KITCHEN, &["Glass", "Double-Wall Steel"], &["350 ml", "1 L"]),
    k("Travel Mug", KITCHEN, &["Insulated", "Leak-Proof"], &["350 ml", "470 ml"]),
    // Pantry
    k("Bread Flour", PANTRY, &["Strong White", "Wholemeal", "Rye", "Spelt"], &["1 kg", "2.5 kg"]),
    k("Dry Yeast", PANTRY, &["Instant", "Active"], &["10 Sachets", "500 g"]),
    k("Vanilla Extract", PANTRY, &["Pure", "Bourbon"], &["50 ml", "100 ml"]),
    k("Coffee Beans", PANTRY, &["Espresso Roast", "Medium Roast", "Single-Origin Ethiopia", "Decaf"], &["250 g", "1 kg"]),
    k("Protein Powder", PANTRY, &["Whey", "Plant-Based"], &["Chocolate", "Vanilla", "Strawberry"]),
    k("Energy Bars", PANTRY, &["Oat", "Nut", "Protein"], &["Peanut", "Berry", "Cocoa"]),
    k("Trail Mix", PANTRY, &["Classic", "Tropical", "Salted Nut"], &["200 g", "500 g"]),
    k("Freeze-Dried Meal", PANTRY, &["Chili con Carne", "Pasta Bolognese", "Vegetable Curry", "Mac and Cheese"], &["1 Serving", "2 Servings"]),
    // Beauty
    k("Facial Cleanser", BEAUTY, &["Gentle Foaming", "Gel", "Cream"], ML_SMALL),
    k("Face Serum", BEAUTY, &["Vitamin C", "Hyaluronic Acid", "Niacinamide", "Retinol"], &["30 ml"]),
    k("Moisturizer", BEAUTY, &["Hydrating Day", "Oil-Free", "Rich Night"], &["50 ml", "100 ml"]),
    k("Sunscreen", BEAUTY, &["SPF 30 Face", "SPF 50 Sport", "SPF 50 Mineral"], &["50 ml", "200 ml"]),
    k("Lipstick", BEAUTY, &["Matte", "Satin", "Long-Wear"], &["Rose", "Berry", "Nude", "Coral"]),
    k("Mascara", BEAUTY, &["Volumizing", "Lengthening", "Waterproof"], &["Black", "Brown"]),
    k("Eyeshadow Palette", BEAUTY, &["Warm Neutrals", "Smoky", "Sunset"], &[]),
    k("Nail Polish", BEAUTY, &["Gel-Effect", "Quick-Dry"], &["Red", "Blush", "Navy", "Clear"]),
    k("Makeup Brush Set", BEAUTY, &["8-Piece", "12-Piece", "Travel"], &[]),
    k("Shampoo", BEAUTY, &["Volumizing", "Repair", "Anti-Dandruff", "Curl"], ML_HAIR),
    k("Conditioner", BEAUTY, &["Volumizing", "Repair", "Curl"], ML_HAIR),
    k("Hair Dryer", BEAUTY, &["Ionic", "Compact Travel", "Diffuser"], BLACK_WHITE),
    k("Sheet Mask Set", BEAUTY, &["Hydrating", "Brightening"], &["5-Pack", "10-Pack"]),
    // Electronics
    k("Wireless Earbuds", ELECTRONICS, &["Noise-Cancelling", "Sport", "Everyday"], BLACK_WHITE),
    k("Over-Ear Headphones", ELECTRONICS, &["Noise-Cancelling", "Studio", "Foldable"], &["Black", "Silver"]),
    k("Bluetooth Speaker", ELECTRONICS, &["Waterproof", "Portable", "Party"], &["Black", "Blue", "Red"]),
    k("Power Bank", ELECTRONICS, &["10000 mAh", "20000 mAh", "Slim 5000 mAh"], BLACK_WHITE),
    k("USB-C Charger", ELECTRONICS, &["65 W", "30 W", "Dual-Port 45 W"], &[]),
    k("Phone Case", ELECTRONICS, &["Rugged", "Clear", "Wallet"], &["Black", "Blue", "Pink"]),
    k("Screen Protector", ELECTRONICS, &["Tempered Glass", "Privacy"], &["2-Pack", "3-Pack"]),
    k("Fitness Tracker", ELECTRONICS, &["GPS", "Slim", "Heart-Rate"], &["Black", "Lime"]),
    k("Action Camera", ELECTRONICS, &["4K", "Waterproof 4K", "360°"], &[]),
    k("Memory Card", ELECTRONICS, &["microSD 64 GB", "microSD 128 GB", "microSD 256 GB"], &[]),
    k("Camera Tripod", ELECTRONICS, &["Flexible", "Travel", "Tabletop"], &[]),
    // Home office
    k("Office Chair", OFFICE, &["Ergonomic Mesh", "Task", "High-Back"], BLACK_GREY),
    k("Standing Desk", OFFICE, &["Electric", "Manual Crank", "Desktop Converter"], &["120 cm", "140 cm"]),
    k("Monitor", OFFICE, &["27-Inch 4K", "24-Inch Full HD", "34-Inch Ultrawide"], &[]),
    k("Monitor Arm", OFFICE, &["Single", "Dual", "Gas-Spring"], &[]),
    k("Mechanical Keyboard", OFFICE, &["Tenkeyless", "Full-Size", "Low-Profile"], &["Brown Switches", "Red Switches"]),
    k("Wireless Mouse", OFFICE, &["Ergonomic", "Compact", "Vertical"], BLACK_GREY),
    k("Desk Lamp", OFFICE, &["LED", "Clip-On", "Architect"], BLACK_WHITE),
    k("Webcam", OFFICE, &["1080p", "4K", "Wide-Angle"], &[]),
    k("Laptop Stand", OFFICE, &["Aluminium", "Foldable"], &["Silver", "Space Grey"]),
    k("Notebook", OFFICE, &["A5 Dotted", "A4 Ruled", "Hardcover Squared"], &["Black", "Sage", "Terracotta"]),
    k("Gel Pens", OFFICE, &["Fine 0.5 mm", "Medium 0.7 mm"], &["10-Pack", "24-Pack"]),
    k("Desk Organizer", OFFICE, &["Bamboo", "Mesh Metal"], &[]),
    k("Highlighters", OFFICE, &["Pastel", "Neon"], &["6-Pack", "12-Pack"]),
    // Toys
    k("Building Blocks Set", TOYS, &["Castle", "Space Station", "Fire Station", "Farm"], &["250 Pieces", "500 Pieces"]),
    k("Wooden Train Set", TOYS, &["Starter", "Deluxe Mountain"], &[]),
    k("Plush Toy", TOYS, &["Teddy Bear", "Bunny", "Dinosaur", "Fox"], &["Small", "Large"]),
    k("Jigsaw Puzzle", TOYS, &["500-Piece Landscape", "1000-Piece Map", "300-Piece Animals"], &[]),
    k("Board Game", TOYS, &["Family Strategy", "Cooperative Adventure", "Party Word", "Trivia"], &[]),
    k("Card Game", TOYS, &["Quick Party", "Classic Rummy"], &[]),
    k("Art Kit", TOYS, &["Watercolour", "Crayon and Marker", "Clay Modelling"], &[]),
    k("Remote Control Car", TOYS, &["Off-Road", "Racing", "Stunt"], &["Red", "Blue"]),
    k("Kite", TOYS, &["Delta", "Stunt", "Diamond"], &["Rainbow", "Blue"]),
    // Books
    k("Baking Book", BOOKS, &["The Weekend Loaf", "Sourdough at Home", "Simple Cakes and Bakes", "Pastry Basics"], BOOK_FORMATS),
    k("Cookbook", BOOKS, &["Weeknight Dinners", "One-Pan Kitchen", "Knife Skills and Beyond"], BOOK_FORMATS),
    k("Coffee Guide", BOOKS, &["The Home Barista", "Brewing Better Coffee"], PAPERBACK),
    k("Hiking Guide", BOOKS, &["Trails of the Northern Ridges", "Wild Camping Handbook", "Day Hikes Near the City"], PAPERBACK),
    k("Running Guide", BOOKS, &["Your First Marathon", "Run Faster, Run Longer"], PAPERBACK),
    k("Picture Book", BOOKS, &["The Sleepy Fox", "Moon Boat", "Dino Says Goodnight", "The Little Kite"], &["Hardcover", "Board Book"]),
    k("Travel Guide", BOOKS, &["Coastal Towns", "City Breaks in Europe", "Island Hopping"], PAPERBACK),
    k("Gardening Book", BOOKS, &["The Kitchen Garden", "Raised Beds Made Easy"], BOOK_FORMATS),
    k("Productivity Book", BOOKS, &["Deep Work Habits", "The Calm Desk"], PAPERBACK),
    // Garden
    k("Raised Garden Bed", GARDEN, &["Cedar", "Galvanised Steel"], &["120 x 60 cm", "180 x 90 cm"]),
    k("Potting Soil", GARDEN, &["Organic", "Seed-Starting"], &["20 L", "40 L"]),
    k("Seed Kit", GARDEN, &["Tomato", "Herb", "Wildflower", "Salad Greens"], &[]),
    k("Garden Gloves", GARDEN, &["Leather", "Nitrile-Coated"], &["S", "M", "L"]),
    k("Pruning Shears", GARDEN, &["Bypass", "Anvil"], &[]),
    k("Watering Can", GARDEN, &["Galvanised", "Plastic"], &["5 L", "10 L"]),
    k("Garden Hose", GARDEN, &["Expandable", "Reinforced"], &["15 m", "30 m"]),
    // Travel
    k("Suitcase", TRAVEL, &["Hard-Shell Carry-On", "Hard-Shell Large", "Soft-Sided Medium"], &["Navy", "Black", "Teal"]),
    k("Packing Cubes", TRAVEL, &["Compression", "Mesh"], &["4-Piece", "6-Piece"]),
    k("Travel Pillow", TRAVEL, &["Memory Foam", "Inflatable"], &["Grey", "Navy"]),
    k("Travel Adapter", TRAVEL, &["Universal", "EU-UK"], &[]),
    k("Toiletry Bag", TRAVEL, &["Hanging", "Compact"], &["Black", "Olive"]),
    k("Beach Towel", TRAVEL, &["Quick-Dry Microfibre", "Cotton Striped"], &["Blue", "Coral"]),
    k("Passport Holder", TRAVEL, &["RFID-Blocking", "Leather"], &[]),
];

/// One stage of a mission: alternative kinds (one is chosen) and the chance the stage happens.
type Stage = (&'static [&'static str], f64);

struct MissionDef {
    intent: &'static str,
    /// Time of year (0..1) when the mission is most popular, and the seasonal amplitude (0..1).
    peak: f64,
    amp: f64,
    /// Stages in their typical order; the first is the lead item.
    stages: &'static [Stage],
}

const MISSIONS: &[MissionDef] = &[
    MissionDef {
        intent: "planning a camping trip",
        peak: 0.5,
        amp: 0.6,
        stages: &[
            (&["Tent"], 0.95),
            (&["Sleeping Bag"], 0.8),
            (&["Sleeping Pad"], 0.55),
            (&["Headlamp"], 0.55),
            (&["Camp Stove"], 0.45),
            (&["Freeze-Dried Meal"], 0.35),
            (&["Water Filter"], 0.3),
            (&["Camping Chair"], 0.3),
        ],
    },
    MissionDef {
        intent: "getting ready for day hikes",
        peak: 0.4,
        amp: 0.5,
        stages: &[
            (&["Hiking Backpack"], 0.9),
            (&["Trekking Poles"], 0.45),
            (&["Water Bottle"], 0.5),
            (&["Trail Mix"], 0.4),
            (&["Hiking Guide"], 0.35),
            (&["Headlamp"], 0.25),
        ],
    },
    MissionDef {
        intent: "baking bread and cakes at home",
        peak: 0.95,
        amp: 0.5,
        stages: &[
            (&["Stand Mixer"], 0.75),
            (&["Mixing Bowl Set"], 0.6),
            (&["Baking Sheet", "Loaf Pan"], 0.6),
            (&["Kitchen Scale"], 0.4),
            (&["Bread Flour"], 0.55),
            (&["Dry Yeast"], 0.4),
            (&["Vanilla Extract"], 0.3),
            (&["Baking Book"], 0.35),
        ],
    },
    MissionDef {
        intent: "making better coffee at home",
        peak: 0.85,
        amp: 0.4,
        stages: &[
            (&["Espresso Machine", "French Press"], 0.9),
            (&["Coffee Grinder"], 0.6),
            (&["Coffee Beans"], 0.7),
            (&["Milk Frother"], 0.4),
            (&["Travel Mug"], 0.3),
            (&["Coffee Guide"], 0.25),
        ],
    },
    MissionDef {
        intent: "equipping a new kitchen",
        peak: 0.7,
        amp: 0.2,
        stages: &[
            (&["Frying Pan"], 0.9),
            (&["Chef's Knife"], 0.6),
            (&["Cutting Board"], 0.55),
            (&["Stock Pot"], 0.45),
            (&["Spatula Set"], 0.45),
            (&["Cookbook"], 0.3),
        ],
    },
    MissionDef {
        intent: "training for a running race",
        peak: 0.3,
        amp: 0.4,
        stages: &[
            (&["Running Shoes"], 0.95),
            (&["Running Shorts"], 0.5),
            (&["Sports Socks"], 0.5),
            (&["Fitness Tracker"], 0.45),
            (&["Water Bottle"], 0.35),
            (&["Energy Bars"], 0.35),
            (&["Running Guide"], 0.25),
        ],
    },
    MissionDef {
        intent: "setting up a home workout",
        peak: 0.03,
        amp: 0.6,
        stages: &[
            (&["Yoga Mat", "Dumbbell Set"], 0.95),
            (&["Resistance Bands"], 0.55),
            (&["Foam Roller"], 0.45),
            (&["Protein Powder"], 0.4),
            (&["Gym Bag"], 0.25),
            (&["Fitness Tracker"], 0.25),
        ],
    },
    MissionDef {
        intent: "building a skincare routine",
        peak: 0.2,
        amp: 0.2,
        stages: &[
            (&["Facial Cleanser"], 0.8),
            (&["Face Serum"], 0.65),
            (&["Moisturizer"], 0.7),
            (&["Sunscreen"], 0.45),
            (&["Sheet Mask Set"], 0.3),
        ],
    },
    MissionDef {
        intent: "refreshing a makeup bag for a night out",
        peak: 0.92,
        amp: 0.4,
        stages: &[
            (&["Lipstick"], 0.9),
            (&["Mascara"], 0.6),
            (&["Eyeshadow Palette"], 0.5),
            (&["Makeup Brush Set"], 0.4),
            (&["Nail Polish"], 0.4),
        ],
    },
    MissionDef {
        intent: "taking care of their hair",
        peak: 0.6,
        amp: 0.1,
        stages: &[(&["Shampoo"], 0.9), (&["Conditioner"], 0.7), (&["Hair Dryer"], 0.4)],
    },
    MissionDef {
        intent: "setting up a home office",
        peak: 0.7,
        amp: 0.3,
        stages: &[
            (&["Office Chair", "Standing Desk"], 0.95),
            (&["Monitor"], 0.6),
            (&["Monitor Arm"], 0.35),
            (&["Mechanical Keyboard"], 0.5),
            (&["Wireless Mouse"], 0.5),
            (&["Webcam"], 0.35),
            (&["Desk Lamp"], 0.4),
            (&["Laptop Stand"], 0.3),
            (&["Productivity Book"], 0.15),
        ],
    },
    MissionDef {
        intent: "buying school and study supplies",
        peak: 0.68,
        amp: 0.7,
        stages: &[
            (&["Notebook"], 0.9),
            (&["Gel Pens"], 0.7),
            (&["Highlighters"], 0.5),
            (&["Desk Organizer"], 0.3),
            (&["Desk Lamp"], 0.2),
        ],
    },
    MissionDef {
        intent: "buying accessories for a new phone",
        peak: 0.75,
        amp: 0.3,
        stages: &[
            (&["Phone Case"], 0.9),
            (&["Screen Protector"], 0.6),
            (&["USB-C Charger"], 0.5),
            (&["Power Bank"], 0.4),
            (&["Wireless Earbuds"], 0.3),
        ],
    },
    MissionDef {
        intent: "listening to music on the go",
        peak: 0.45,
        amp: 0.2,
        stages: &[
            (&["Wireless Earbuds", "Over-Ear Headphones"], 0.95),
            (&["Bluetooth Speaker"], 0.45),
            (&["Power Bank"], 0.35),
        ],
    },
    MissionDef {
        intent: "filming adventures with an action camera",
        peak: 0.55,
        amp: 0.4,
        stages: &[
            (&["Action Camera"], 0.95),
            (&["Memory Card"], 0.7),
            (&["Camera Tripod"], 0.5),
            (&["Power Bank"], 0.4),
            (&["Travel Guide"], 0.2),
        ],
    },
    MissionDef {
        intent: "finding a birthday gift for a child",
        peak: 0.5,
        amp: 0.0,
        stages: &[
            (&["Building Blocks Set", "Remote Control Car", "Wooden Train Set", "Plush Toy"], 0.95),
            (&["Board Game"], 0.4),
            (&["Art Kit"], 0.4),
            (&["Picture Book"], 0.4),
            (&["Kite"], 0.2),
        ],
    },
    MissionDef {
        intent: "planning a family game night",
        peak: 0.9,
        amp: 0.5,
        stages: &[(&["Board Game"], 0.95), (&["Card Game"], 0.5), (&["Jigsaw Puzzle"], 0.45)],
    },
    MissionDef {
        intent: "packing for a holiday abroad",
        peak: 0.55,
        amp: 0.5,
        stages: &[
            (&["Suitcase"], 0.9),
            (&["Packing Cubes"], 0.55),
            (&["Travel Pillow"], 0.45),
            (&["Travel Adapter"], 0.45),
            (&["Toiletry Bag"], 0.4),
            (&["Passport Holder"], 0.3),
            (&["Travel Guide"], 0.3),
            (&["Sunscreen"], 0.25),
        ],
    },
    MissionDef {
        intent: "preparing for a day at the beach",
        peak: 0.55,
        amp: 0.7,
        stages: &[
            (&["Beach Towel"], 0.9),
            (&["Sunscreen"], 0.7),
            (&["Cooler Bag"], 0.45),
            (&["Bluetooth Speaker"], 0.3),
            (&["Kite"], 0.25),
            (&["Camping Chair"], 0.3),
        ],
    },
    MissionDef {
        intent: "starting a vegetable garden",
        peak: 0.3,
        amp: 0.6,
        stages: &[
            (&["Raised Garden Bed", "Seed Kit"], 0.95),
            (&["Potting Soil"], 0.6),
            (&["Garden Gloves"], 0.5),
            (&["Pruning Shears"], 0.4),
            (&["Watering Can", "Garden Hose"], 0.45),
            (&["Gardening Book"], 0.25),
        ],
    },
];

// ---------------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------------

/// Weight of a repeated brand when the shopper is brand-loyal.
const BRAND_BOOST: f64 = 4.0;
/// Zipf exponent of item popularity within a kind, and of mission popularity.
const ITEM_ZIPF: f64 = 1.0;
const MISSION_ZIPF: f64 = 0.6;
/// Chance that two neighbouring non-lead stages are visited in swapped order.
const SWAP: f64 = 0.15;
/// Chance of returning to the first-viewed item of a kind after comparing alternatives.
const RETURN: f64 = 0.35;
/// Chance of each further click on an already-viewed kind once a mission's stages are all seen.
const REVISIT: f64 = 0.6;

struct Item {
    brand: &'static str,
    weight: f64,
}

struct Shop {
    items: Vec<Item>,
    /// Item ids of each kind.
    kind_items: Vec<Vec<u32>>,
    /// Kinds with items of each stage of each mission (empty stages removed).
    missions: Vec<Vec<(Vec<usize>, f64)>>,
    mission_weight: Vec<f64>,
    /// Cumulative item weights, for popular noise clicks.
    cum_weight: Vec<f64>,
}

/// Picks an index with probability proportional to `weights`; `None` if all are zero.
fn pick_weighted(rng: &mut ChaCha8Rng, weights: &[f64]) -> Option<usize> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let mut x = rng.gen::<f64>() * total;
    for (i, &w) in weights.iter().enumerate() {
        if x < w {
            return Some(i);
        }
        x -= w;
    }
    weights.iter().rposition(|&w| w > 0.0)
}

fn kind_index() -> HashMap<&'static str, usize> {
    KINDS.iter().enumerate().map(|(i, k)| (k.noun, i)).collect()
}

/// Kinds in the order they get items when the catalog is small: the lead kinds of all
/// missions first, then second stages, and so on; kinds no mission uses last.
fn kind_priority(index: &HashMap<&'static str, usize>) -> Vec<usize> {
    let mut order = Vec::with_capacity(KINDS.len());
    let mut seen = vec![false; KINDS.len()];
    let depth = MISSIONS.iter().map(|m| m.stages.len()).max().unwrap_or(0);
    for d in 0..depth {
        for m in MISSIONS {
            if let Some((alts, _)) = m.stages.get(d) {
                for noun in *alts {
                    let k = index[noun];
                    if !seen[k] {
                        seen[k] = true;
                        order.push(k);
                    }
                }
            }
        }
    }
    order.extend((0..KINDS.len()).filter(|&k| !seen[k]));
    order
}

fn title_of(kind: &KindDef, brand: &str, variant: &str, attr: Option<&str>) -> String {
    if kind.cat == BOOKS {
        match attr {
            Some(a) => format!("{variant} — {}, {a} ({brand})", kind.noun),
            None => format!("{variant} — {} ({brand})", kind.noun),
        }
    } else {
        match attr {
            Some(a) => format!("{brand} {variant} {}, {a}", kind.noun),
            None => format!("{brand} {variant} {}", kind.noun),
        }
    }
}

/// Builds the catalog: items of each kind with brand/variant/attribute combinations spread over
/// brands and variants, ids shuffled.
fn build_shop(cfg: &SynthConfig, rng: &mut ChaCha8Rng) -> (Shop, Catalog) {
    let index = kind_index();
    let n = cfg.n_items;
    let nk = KINDS.len();
    let mut counts = vec![n / nk; nk];
    for &k in kind_priority(&index).iter().take(n % nk) {
        counts[k] += 1;
    }

    // (kind, brand, title) of every item, grouped by kind; ids are assigned after a shuffle.
    let mut drafts: Vec<(usize, &'static str, String)> = Vec::with_capacity(n);
    let mut titles: HashSet<String> = HashSet::with_capacity(n);
    for (ki, kind) in KINDS.iter().enumerate() {
        let brands = CATEGORIES[kind.cat].brands;
        let attrs: Vec<Option<&str>> =
            if kind.attrs.is_empty() { vec![None] } else { kind.attrs.iter().map(|a| Some(*a)).collect() };
        let mut combos: Vec<(usize, usize, usize)> = Vec::new();
        for b in 0..brands.len() {
            for v in 0..kind.variants.len() {
                for a in 0..attrs.len() {
                    combos.push((b, v, a));
                }
            }
        }
        combos.shuffle(rng);
        // Greedily take the combination whose brand, then variant, is least used so far.
        let mut used = vec![false; combos.len()];
        let mut brand_uses = vec![0usize; brands.len()];
        let mut variant_uses = vec![0usize; kind.variants.len()];
        for j in 0..counts[ki] {
            let round = j / combos.len();
            if j % combos.len() == 0 {
                used.iter_mut().for_each(|u| *u = false);
            }
            let best = (0..combos.len())
                .filter(|&c| !used[c])
                .min_by_key(|&c| (brand_uses[combos[c].0], variant_uses[combos[c].1]))
                .expect("an unused combination is left in this round");
            used[best] = true;
            let (b, v, a) = combos[best];
            brand_uses[b] += 1;
            variant_uses[v] += 1;
            let base = title_of(kind, brands[b], kind.variants[v], attrs[a]);
            let mut title = if round == 0 { base.clone() } else { format!("{base} (Gen {})", round + 1) };
            let mut extra = round + 1;
            while titles.contains(&title) {
                extra += 1;
                title = format!("{base} (Gen {extra})");
            }
            titles.insert(title.clone());
            drafts.push((ki, brands[b], title));
        }
    }
    drafts.shuffle(rng);

    let mut kind_items: Vec<Vec<u32>> = vec![Vec::new(); nk];
    let mut items = Vec::with_capacity(n);
    let mut infos = Vec::with_capacity(n);
    for (i, (ki, brand, title)) in drafts.into_iter().enumerate() {
        let id = i as u32 + 1;
        kind_items[ki].push(id);
        let kind = &KINDS[ki];
        let mut info = ItemInfo::new(title);
        info.fields = vec![
            ("category".to_string(), CATEGORIES[kind.cat].name.to_string()),
            ("brand".to_string(), brand.to_string()),
            ("kind".to_string(), kind.noun.to_string()),
        ];
        infos.push(info);
        items.push(Item { brand, weight: 0.0 });
    }
    // Zipf popularity within each kind: the kind's items in a random rank order.
    for ids in &kind_items {
        let mut ranked = ids.clone();
        ranked.shuffle(rng);
        for (r, &id) in ranked.iter().enumerate() {
            items[id as usize - 1].weight = 1.0 / ((r + 1) as f64).powf(ITEM_ZIPF);
        }
    }

    let missions: Vec<Vec<(Vec<usize>, f64)>> = MISSIONS
        .iter()
        .map(|m| {
            m.stages
                .iter()
                .map(|(alts, p)| {
                    let ks: Vec<usize> =
                        alts.iter().map(|a| index[a]).filter(|&k| !kind_items[k].is_empty()).collect();
                    (ks, *p)
                })
                .filter(|(ks, _)| !ks.is_empty())
                .collect()
        })
        .collect();
    let mut ranks: Vec<usize> = (0..MISSIONS.len()).collect();
    ranks.shuffle(rng);
    // Mission popularity: Zipf over a random rank order (missions without items never happen).
    let zipf = |r: usize| 1.0 / ((r + 1) as f64).powf(MISSION_ZIPF);
    let mission_weight =
        ranks.iter().zip(&missions).map(|(&r, st)| if st.is_empty() { 0.0 } else { zipf(r) }).collect();
    let mut acc = 0.0;
    let cum_weight = items
        .iter()
        .map(|it| {
            acc += it.weight;
            acc
        })
        .collect();
    (Shop { items, kind_items, missions, mission_weight, cum_weight }, Catalog::new(infos))
}

impl Shop {
    fn brand(&self, id: u32) -> &'static str {
        self.items[id as usize - 1].brand
    }

    /// An item of `kind` by popularity (boosted for the preferred brand), never `exclude`.
    fn pick_of_kind(
        &self,
        rng: &mut ChaCha8Rng,
        kind: usize,
        brand: Option<&str>,
        exclude: Option<u32>,
    ) -> Option<u32> {
        let ids = &self.kind_items[kind];
        let weights: Vec<f64> = ids
            .iter()
            .map(|&id| {
                let it = &self.items[id as usize - 1];
                if Some(id) == exclude {
                    0.0
                } else if Some(it.brand) == brand {
                    it.weight * BRAND_BOOST
                } else {
                    it.weight
                }
            })
            .collect();
        pick_weighted(rng, &weights).map(|i| ids[i])
    }

    /// A noise click: usually a globally popular item, sometimes any item.
    fn noise_item(&self, rng: &mut ChaCha8Rng) -> u32 {
        let n = self.items.len();
        if rng.gen_bool(0.3) {
            return rng.gen_range(1..=n as u32);
        }
        let total = *self.cum_weight.last().expect("catalog is not empty");
        let x = rng.gen::<f64>() * total;
        let i = self.cum_weight.partition_point(|&c| c <= x).min(n - 1);
        i as u32 + 1
    }

    /// The mission of a session at time `t` (fraction of the synthetic year).
    fn pick_mission(&self, rng: &mut ChaCha8Rng, t: f64) -> Option<usize> {
        let weights: Vec<f64> = MISSIONS
            .iter()
            .zip(&self.mission_weight)
            .map(|(m, &w)| w * (1.0 + m.amp * (std::f64::consts::TAU * (t - m.peak)).cos()))
            .collect();
        pick_weighted(rng, &weights)
    }

    /// A session length: 2 + geometric, capped at `max_session_len`.
    fn session_len(cfg: &SynthConfig, rng: &mut ChaCha8Rng) -> usize {
        let max = cfg.max_session_len.max(2);
        let extra_mean = (cfg.mean_session_len - 2.0).max(0.0);
        let p = 1.0 / (extra_mean + 1.0);
        let mut len = 2;
        while len < max && !rng.gen_bool(p) {
            len += 1;
        }
        len
    }

    /// The kinds a shopper on mission `m` looks at: the lead stage, then the optional stages
    /// that happen (neighbours sometimes swapped); and the skipped stages.
    fn plan(&self, rng: &mut ChaCha8Rng, m: usize) -> (Vec<usize>, Vec<usize>) {
        let mut plan = Vec::new();
        let mut skipped = Vec::new();
        for (i, (kinds, p)) in self.missions[m].iter().enumerate() {
            let kind = *kinds.choose(rng).expect("stages are non-empty");
            if i == 0 || rng.gen_bool(*p) {
                plan.push(kind);
            } else {
                skipped.push(kind);
            }
        }
        for i in 1..plan.len().saturating_sub(1) {
            if rng.gen_bool(SWAP) {
                plan.swap(i, i + 1);
            }
        }
        (plan, skipped)
    }

    /// One session at time `t`: its missions (one, or two when the shopper moved on to a second
    /// one) and its clicks.
    fn session(&self, cfg: &SynthConfig, rng: &mut ChaCha8Rng, t: f64) -> (Vec<usize>, Vec<u32>) {
        let target = Self::session_len(cfg, rng);
        let Some(m) = self.pick_mission(rng, t) else {
            // No mission has items (a tiny catalog): random clicks.
            let s = (0..target).map(|_| self.noise_item(rng)).collect();
            return (vec![0], s);
        };
        // The walk: the first mission's plan, maybe a second mission's plan, then the first
        // mission's skipped stages as a reserve for long sessions.
        let (mut plan, skipped) = self.plan(rng, m);
        let mut second = None;
        if rng.gen_bool(cfg.mission_switch.clamp(0.0, 1.0)) {
            if let Some(m2) = self.pick_mission(rng, t).filter(|&m2| m2 != m) {
                let start = plan.len();
                let (plan2, _) = self.plan(rng, m2);
                plan.extend(plan2);
                second = Some((m2, start..plan.len()));
            }
        }
        plan.extend(skipped);
        let mut missions = vec![m];

        let noise = cfg.noise.clamp(0.0, 1.0);
        let compare = cfg.compare.clamp(0.0, 0.95);
        let mut brand: Option<&str> = None;
        let mut s: Vec<u32> = Vec::with_capacity(target);
        for (step, &kind) in plan.iter().enumerate() {
            if s.len() >= target {
                break;
            }
            let Some(first) = self.pick_of_kind(rng, kind, brand, None) else {
                continue;
            };
            s.push(first);
            if let Some((m2, range)) = &second {
                if range.contains(&step) && missions.len() == 1 {
                    missions.push(*m2);
                }
            }
            if s.len() == 1 && rng.gen_bool(cfg.brand_loyalty.clamp(0.0, 1.0)) {
                brand = Some(self.brand(first));
            }
            // Compare alternatives of the same kind, then maybe return to the first one.
            let mut compared = false;
            let mut p = compare;
            while s.len() < target && rng.gen_bool(p) {
                let last = *s.last().expect("non-empty");
                match self.pick_of_kind(rng, kind, brand, Some(last)) {
                    Some(alt) => {
                        s.push(alt);
                        compared = true;
                    }
                    None => break,
                }
                p *= 0.6;
            }
            if compared && s.len() < target && *s.last().expect("non-empty") != first && rng.gen_bool(RETURN)
            {
                s.push(first);
            }
            if s.len() < target && rng.gen_bool(noise) {
                s.push(self.noise_item(rng));
            }
        }
        // Every stage seen but the session goes on: the shopper goes back to a kind they viewed
        // and looks at it again (an item of it, maybe one already clicked).
        while s.len() < target && rng.gen_bool(REVISIT) {
            let kind = plan[rng.gen_range(0..plan.len())];
            match self.pick_of_kind(rng, kind, brand, s.last().copied()) {
                Some(id) => s.push(id),
                None => break,
            }
        }
        // At least two clicks: another look at the lead kind, or a popular item.
        while s.len() < 2 {
            let lead = plan[0];
            let more = self.pick_of_kind(rng, lead, brand, s.last().copied());
            s.push(more.unwrap_or_else(|| self.noise_item(rng)));
        }
        (missions, s)
    }
}

fn intent_names(missions: &[usize]) -> Vec<&'static str> {
    missions.iter().map(|&m| MISSIONS[m].intent).collect()
}

/// Generates the dataset of `cfg` and the hidden missions of every session.
pub fn generate_with_intents(cfg: &SynthConfig) -> Generated {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let (shop, catalog) = build_shop(cfg, &mut rng);
    let mut dataset = Dataset { name: NAME.to_string(), catalog, ..Default::default() };
    if cfg.n_items == 0 {
        return Generated {
            dataset,
            train_intents: Vec::new(),
            test_sessions: Vec::new(),
            test_intents: Vec::new(),
        };
    }
    let total = (cfg.n_train_sessions + cfg.n_test_sessions).max(1) as f64;
    let time = |i: usize| i as f64 / total;

    let mut train = Vec::with_capacity(cfg.n_train_sessions);
    let mut train_intents = Vec::with_capacity(cfg.n_train_sessions);
    let mut seen = vec![false; cfg.n_items + 1];
    for i in 0..cfg.n_train_sessions {
        let (m, s) = shop.session(cfg, &mut rng, time(i));
        for &id in &s {
            seen[id as usize] = true;
        }
        train.push(s);
        train_intents.push(intent_names(&m));
    }

    // Test sessions use only items seen in training: resample, and as a last resort drop the
    // unseen clicks (and repeated clicks that this makes adjacent).
    let mut test = Vec::with_capacity(cfg.n_test_sessions);
    let mut test_intents = Vec::with_capacity(cfg.n_test_sessions);
    for i in cfg.n_train_sessions..cfg.n_train_sessions + cfg.n_test_sessions {
        let mut attempt = shop.session(cfg, &mut rng, time(i));
        for _ in 0..30 {
            if attempt.1.iter().all(|&id| seen[id as usize]) {
                break;
            }
            attempt = shop.session(cfg, &mut rng, time(i));
        }
        let (m, mut s) = attempt;
        if !s.iter().all(|&id| seen[id as usize]) {
            s.retain(|&id| seen[id as usize]);
            s.dedup();
        }
        test.push(s);
        test_intents.push(intent_names(&m));
    }

    dataset.train = sessions_to_examples(&train, true);
    dataset.test = sessions_to_examples(&test, true);
    dataset.train_sequences = train;
    Generated { dataset, train_intents, test_sessions: test, test_intents }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn small() -> SynthConfig {
        SynthConfig { n_items: 200, n_train_sessions: 1500, n_test_sessions: 300, ..Default::default() }
    }

    /// Top-`k` items by count, ties by id.
    fn top_k(counts: &HashMap<u32, usize>, k: usize) -> Vec<u32> {
        let mut v: Vec<(u32, usize)> = counts.iter().map(|(&i, &c)| (i, c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter().take(k).map(|(i, _)| i).collect()
    }

    /// (first-order Markov HR@20, popularity HR@20) on the test examples.
    fn markov_vs_popularity(ds: &Dataset) -> (f64, f64) {
        let mut pop: HashMap<u32, usize> = HashMap::new();
        let mut next: HashMap<u32, HashMap<u32, usize>> = HashMap::new();
        for s in &ds.train_sequences {
            for &id in s {
                *pop.entry(id).or_default() += 1;
            }
            for w in s.windows(2) {
                *next.entry(w[0]).or_default().entry(w[1]).or_default() += 1;
            }
        }
        let popular = top_k(&pop, 20);
        let (mut hit_m, mut hit_p) = (0usize, 0usize);
        for e in &ds.test {
            let last = *e.prefix.last().unwrap();
            let mut cands = next.get(&last).map(|c| top_k(c, 20)).unwrap_or_default();
            for &p in &popular {
                if cands.len() >= 20 {
                    break;
                }
                if !cands.contains(&p) {
                    cands.push(p);
                }
            }
            hit_m += cands.contains(&e.target) as usize;
            hit_p += popular.contains(&e.target) as usize;
        }
        let n = ds.test.len() as f64;
        (hit_m as f64 / n, hit_p as f64 / n)
    }

    #[test]
    fn synth_is_deterministic_per_seed() {
        let cfg = small();
        let a = generate(&cfg);
        let b = generate(&cfg);
        assert_eq!(a, b);
        let c = generate(&SynthConfig { seed: cfg.seed + 1, ..cfg.clone() });
        assert_ne!(a.train_sequences, c.train_sequences);
        assert_ne!(a.test, c.test);
    }

    #[test]
    fn synth_default_dataset_is_valid_and_fast() {
        let cfg = SynthConfig::default();
        let start = Instant::now();
        let g = generate_with_intents(&cfg);
        let elapsed = start.elapsed();
        let ds = &g.dataset;
        ds.validate().unwrap();
        assert_eq!(ds.name, "synthetic-shop");
        assert_eq!(ds.n_items(), 600);
        assert_eq!(ds.train_sequences.len(), 6000);
        assert_eq!(g.train_intents.len(), 6000);
        assert_eq!(g.test_sessions.len(), 800);
        assert_eq!(g.test_intents.len(), 800);
        assert_eq!(ds.train, sessions_to_examples(&ds.train_sequences, true));
        assert_eq!(ds.test, sessions_to_examples(&g.test_sessions, true));
        // Lengths 2..=15, mean around 5-6.
        let lens: Vec<usize> = ds.train_sequences.iter().map(Vec::len).collect();
        assert!(lens.iter().all(|&l| (2..=15).contains(&l)));
        let mean = lens.iter().sum::<usize>() as f64 / lens.len() as f64;
        assert!((4.5..=6.5).contains(&mean), "mean session length {mean}");
        // Every test item was seen in training.
        let train_items: HashSet<u32> = ds.train_sequences.iter().flatten().copied().collect();
        for e in &ds.test {
            assert!(e.prefix.iter().chain([&e.target]).all(|id| train_items.contains(id)));
        }
        // Most of the catalog is used.
        assert!(train_items.len() > 500, "{} items used", train_items.len());
        let st = crate::stats::stats(ds);
        let (markov, popularity) = markov_vs_popularity(ds);
        eprintln!(
            "synthetic-shop: {} items, {} train / {} test examples, avg length {:.2}, \
             mean session {mean:.2}, Markov HR@20 {markov:.3} vs popularity {popularity:.3}, \
             generated in {elapsed:?} (debug build)",
            st.items, st.train, st.test, st.avg_length
        );
        // Generous bound: the crate itself is unoptimised in test builds.
        assert!(elapsed.as_secs_f64() < 2.0, "generation took {elapsed:?}");
    }

    #[test]
    fn synth_ids_in_range_for_any_size() {
        for n_items in [1, 7, 40, 150, 2500] {
            let cfg =
                SynthConfig { n_items, n_train_sessions: 300, n_test_sessions: 50, ..Default::default() };
            let ds = generate(&cfg);
            assert_eq!(ds.n_items(), n_items);
            ds.validate().unwrap();
            for s in &ds.train_sequences {
                assert!(s.len() >= 2 && s.iter().all(|&id| id >= 1 && id as usize <= n_items));
            }
        }
        let empty = generate(&SynthConfig { n_items: 0, ..small() });
        assert_eq!(empty.n_items(), 0);
        assert!(empty.train.is_empty() && empty.test.is_empty());
        empty.validate().unwrap();
    }

    #[test]
    fn synth_titles_unique_and_described() {
        for n_items in [600, 5000] {
            let ds = generate(&SynthConfig {
                n_items,
                n_train_sessions: 10,
                n_test_sessions: 2,
                ..Default::default()
            });
            let mut titles = HashSet::new();
            for (id, info) in ds.catalog.iter() {
                assert!(!info.title.trim().is_empty(), "item {id} has no title");
                assert_eq!(info.prompt_title, info.title);
                assert!(!info.title.contains(['\t', '\n']));
                assert!(titles.insert(info.title.clone()), "duplicate title {:?}", info.title);
                for f in ["category", "brand", "kind"] {
                    assert!(info.field(f).is_some_and(|v| !v.is_empty()), "item {id} lacks {f}");
                }
                let kind = info.field("kind").unwrap();
                assert!(info.title.contains(kind), "{:?} does not name its kind", info.title);
            }
        }
    }

    #[test]
    fn synth_every_kind_is_in_a_mission_and_every_mission_resolves() {
        let index = kind_index();
        assert_eq!(index.len(), KINDS.len(), "kind nouns are unique");
        let mut used = vec![false; KINDS.len()];
        for m in MISSIONS {
            assert!(!m.stages.is_empty());
            for (alts, p) in m.stages {
                assert!(*p > 0.0 && *p <= 1.0);
                for a in *alts {
                    let k = *index.get(a).unwrap_or_else(|| panic!("unknown kind {a:?} in {:?}", m.intent));
                    used[k] = true;
                }
            }
        }
        for (k, u) in used.iter().enumerate() {
            assert!(u, "kind {:?} is in no mission", KINDS[k].noun);
        }
        assert_eq!(intents().len(), MISSIONS.len());
    }

    #[test]
    fn synth_sequence_structure_beats_popularity() {
        let ds = generate(&SynthConfig::default());
        let (markov, popularity) = markov_vs_popularity(&ds);
        assert!(
            markov >= 2.0 * popularity && markov > 0.2,
            "Markov HR@20 {markov:.3} vs popularity {popularity:.3}"
        );
    }

    #[test]
    fn synth_titles_carry_signal() {
        let ds = generate(&SynthConfig::default());
        let cat = |id: u32| ds.catalog.get(id).and_then(|i| i.field("category")).unwrap().to_string();
        let kind = |id: u32| ds.catalog.get(id).and_then(|i| i.field("kind")).unwrap().to_string();
        let (mut same_cat, mut same_kind) = (0usize, 0usize);
        for e in &ds.test {
            let c = cat(e.target);
            same_cat += e.prefix.iter().any(|&p| cat(p) == c) as usize;
            let k = kind(e.target);
            same_kind += e.prefix.iter().any(|&p| kind(p) == k) as usize;
        }
        let n = ds.test.len() as f64;
        let (fc, fk) = (same_cat as f64 / n, same_kind as f64 / n);
        eprintln!("target category in prefix: {fc:.3}; target kind in prefix: {fk:.3}");
        assert!(fc > 0.6, "target category in prefix for only {fc:.3} of test examples");
        // Kinds repeat less than categories, but often (comparisons, returns).
        assert!(fk > 0.25 && fk < fc);
    }

    #[test]
    fn synth_intents_follow_missions() {
        let g = generate_with_intents(&small());
        let all = intents();
        for i in g.train_intents.iter().chain(&g.test_intents) {
            assert!((1..=2).contains(&i.len()) && i.iter().all(|x| all.contains(x)), "{i:?}");
            assert!(i.len() == 1 || i[0] != i[1]);
        }
        let two = g.train_intents.iter().filter(|i| i.len() == 2).count();
        assert!(two > 0 && two * 3 < g.train_intents.len(), "{two} two-mission sessions");
        // A camping session's lead item is a tent (when the catalog has tents).
        let ds = &g.dataset;
        let kind = |id: u32| ds.catalog.get(id).and_then(|i| i.field("kind")).unwrap();
        let camping: Vec<&Vec<u32>> = ds
            .train_sequences
            .iter()
            .zip(&g.train_intents)
            .filter(|(_, i)| i[0] == "planning a camping trip")
            .map(|(s, _)| s)
            .collect();
        assert!(!camping.is_empty());
        let tent_first = camping.iter().filter(|s| kind(s[0]) == "Tent").count();
        assert!(tent_first * 10 >= camping.len() * 9, "{tent_first} of {} start with a tent", camping.len());
    }
}
