"""Pictures of lens results: matplotlib plots and the self-contained HTML report.

Nothing here computes a lens; every function takes results computed beforehand.
"""
