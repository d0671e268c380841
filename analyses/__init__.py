"""The five analyses, one subpackage per paper: each exports Config, run(config) -> Result."""
