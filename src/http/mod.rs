//! The HTTP listeners: the forward-auth bridge ([`bridge`], on `httpAddress`) and the admin
//! endpoints ([`admin`], on `adminAddress`).

pub mod admin;
pub mod bridge;
