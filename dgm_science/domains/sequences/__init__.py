"""Genetic sequences (16S rRNA genes, Swiss-Prot proteins): FASTA, primers, committed data.

The models, metrics and compression of this domain are the next step; nothing is registered yet."""
