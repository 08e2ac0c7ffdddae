// The discus version recorded in images and printed by `discus --version`.
export const VERSION = "0.1.0";
