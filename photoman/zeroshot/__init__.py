"""CLIP's other uses: zero-shot tagging and classification, zero-shot localisation, duplicates."""
