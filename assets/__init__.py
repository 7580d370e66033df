"""The shipped demo models and sample pictures, installed with the app as package data
(``sae.assets`` finds them)."""
