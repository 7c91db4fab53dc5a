pub mod cds;
pub mod guidelines;
pub mod health;
