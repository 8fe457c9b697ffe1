"""The command line: lorakit train / plan / compare / sweep / export / generate / chat / store.
"""
