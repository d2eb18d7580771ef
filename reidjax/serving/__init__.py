"""A trained model at work: embedding your own tracklets (`inference`), ranking a gallery
(`search`), an exported artefact (`exported`), releases (`release`), tracker output to
cross-camera identities (`tracks`, `association`)."""
