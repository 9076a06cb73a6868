"""Open licences (Patent Law Art. 50-52): declarations, licences taken, their recordal."""
