"""Registered fairseq criteria: masked_lm_dam, squad_span, and masked_lm_sparse / sentence_prediction_sparse
(stock ones plus the attention statistics of density_logging.py); fairseq_sparse/__init__.py imports them."""
