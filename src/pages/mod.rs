//! Pages and bodies the gateway generates itself: error pages, JSON errors,
//! and the security headers every gateway response carries.
