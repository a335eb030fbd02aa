"""Value types shared by every layer: manifest kinds, effective specs, observed state."""
