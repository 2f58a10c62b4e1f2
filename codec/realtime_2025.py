TYPES = {}
