"""The sae-studio desktop editor (PySide6). It only drives ``sae``; see the design notes."""
